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
import { EXAMPLES_USAGE, parseExamplesArgs } from "./config.ts";
import { runExamples } from "./examples.ts";
import { formatError, formatSummary } from "./format.ts";
import { startCli } from "./rpc.ts";

async function main(): Promise<number> {
  const started = await startCli(
    () =>
      parseExamplesArgs(Deno.args, {
        addr: Deno.env.get("ADDR"),
        token: Deno.env.get("CHAT_TOKEN"),
      }),
    EXAMPLES_USAGE,
    "client",
  );
  if (typeof started === "number") return started;
  const { config, client } = started;
  console.log(`connecting to ${config.addr}${config.tls ? " (TLS)" : ""}`);
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
