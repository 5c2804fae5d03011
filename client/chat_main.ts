/**
 * Entry of `deno task chat`: an interactive terminal chat in one room.
 *
 * The only file of the chat CLI that reads `Deno.args`, the environment and
 * signals. At a terminal, input goes through a prompt line that incoming
 * messages do not break (`terminal.ts`); from a pipe, lines are read as they
 * come. Ctrl-C leaves like Ctrl-D does. Exit codes: 0 clean, 1 an error or an
 * unsent message, 2 bad usage (one line on stderr).
 *
 * @module
 */
import { CHAT_USAGE, parseChatArgs } from "./config.ts";
import { type ChatIO, readLines, runChatSession } from "./chat.ts";
import { formatError } from "./format.ts";
import { startCli } from "./rpc.ts";
import { openTerminal } from "./terminal.ts";

async function main(): Promise<number> {
  // no-color.org: any non-empty NO_COLOR turns colour off.
  const color = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
  const started = await startCli(
    () =>
      parseChatArgs(Deno.args, {
        addr: Deno.env.get("ADDR"),
        token: Deno.env.get("CHAT_TOKEN"),
      }, color),
    CHAT_USAGE,
    "chat",
  );
  if (typeof started === "number") return started;
  const { config, client } = started;
  const terminal = Deno.stdin.isTerminal()
    ? openTerminal(`${config.user}> `)
    : undefined;
  const leave = new AbortController();
  const onSigint = () => leave.abort();
  Deno.addSignalListener("SIGINT", onSigint);
  const io: ChatIO = terminal ?? {
    lines: readLines(Deno.stdin.readable),
    out: (l) => console.log(l),
    err: (l) => console.error(l),
  };
  try {
    return await runChatSession(client, config, {
      ...io,
      signal: terminal
        ? AbortSignal.any([terminal.signal!, leave.signal])
        : leave.signal,
    });
  } catch (err) {
    console.error(`error: ${formatError(err)}`);
    return 1;
  } finally {
    terminal?.close();
    Deno.removeSignalListener("SIGINT", onSigint);
    client.close();
  }
}

// Exit explicitly: a stdin read may still be pending after leaving.
Deno.exit(await main());
