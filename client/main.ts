/**
 * Entry of `deno task client`: runs the seed's five examples and exits with a
 * summary.
 *
 * The only file of the examples CLI that reads `Deno.args` and the
 * environment (`ADDR`, `CHAT_TOKEN`). Exit codes: 0 all ok, 1 an RPC failed,
 * 2 bad usage (one line on stderr).
 *
 * @module
 */
import { EXAMPLES_USAGE, parseExamplesArgs, UsageError } from "./config.ts";
import { runExamples } from "./examples.ts";
import { formatError, formatSummary } from "./format.ts";
import { channelCredentials, createChatClient } from "./rpc.ts";

async function main(): Promise<number> {
  let config;
  try {
    config = parseExamplesArgs(Deno.args, {
      addr: Deno.env.get("ADDR"),
      token: Deno.env.get("CHAT_TOKEN"),
    });
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`error: ${err.message} (see deno task client --help)`);
    return 2;
  }
  if (config.help) {
    console.log(EXAMPLES_USAGE);
    return 0;
  }
  let credentials;
  try {
    credentials = await channelCredentials(config);
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    return 2;
  }
  console.log(`connecting to ${config.addr}${config.tls ? " (TLS)" : ""}`);
  const client = createChatClient(config.addr, {}, config.token, credentials);
  try {
    const results = await runExamples(client, config, (l) => console.log(l));
    console.log(`\n=== Summary (${config.addr}) ===`);
    console.log(formatSummary(results));
    return results.every((r) => r.ok) ? 0 : 1;
  } catch (err) {
    console.error(`error: ${formatError(err)}`);
    return 1;
  } finally {
    client.close();
  }
}

Deno.exit(await main());
