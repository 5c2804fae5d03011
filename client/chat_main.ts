/**
 * Entry of `deno task chat`: an interactive terminal chat in one room.
 *
 * The only file of the chat CLI that reads `Deno.args`, the environment and
 * signals. Ctrl-C leaves like Ctrl-D does. Exit codes: 0 clean, 1 an error,
 * 2 bad usage.
 *
 * @module
 */
import { CHAT_USAGE, parseChatArgs, UsageError } from "./config.ts";
import { readLines, runChatSession } from "./chat.ts";
import { formatError } from "./format.ts";
import { createChatClient } from "./rpc.ts";

async function main(): Promise<number> {
  let config;
  try {
    config = parseChatArgs(Deno.args, Deno.env.get("ADDR"));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`error: ${err.message}\n${CHAT_USAGE}`);
    return 2;
  }
  if (config.help) {
    console.log(CHAT_USAGE);
    return 0;
  }
  const client = createChatClient(config.addr);
  const leave = new AbortController();
  const onSigint = () => leave.abort();
  Deno.addSignalListener("SIGINT", onSigint);
  try {
    return await runChatSession(client, config, {
      lines: readLines(Deno.stdin.readable),
      out: (l) => console.log(l),
      err: (l) => console.error(l),
      signal: leave.signal,
    });
  } catch (err) {
    console.error(`error: ${formatError(err)}`);
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
    client.close();
  }
}

// Exit explicitly: a stdin read may still be pending after leaving.
Deno.exit(await main());
