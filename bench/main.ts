/**
 * Entry of `deno task bench`: measure the core (and the edge when present),
 * print a table, save the JSON.
 *
 * The only bench file that reads `Deno.args`. Exit codes: 0 every case ok or
 * skipped, 1 a case failed, 2 bad usage. `--short` is the CI smoke size and
 * checks no thresholds, only that every scenario completes correctly.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { BENCH_USAGE, BenchUsageError, parseBenchArgs } from "./config.ts";
import { formatTable, saveReport } from "./report.ts";
import { runBench } from "./run.ts";

let config;
try {
  config = parseBenchArgs(Deno.args, existsSync("edge/main.ts"));
} catch (err) {
  if (!(err instanceof BenchUsageError)) throw err;
  console.error(`error: ${err.message}\n${BENCH_USAGE}`);
  Deno.exit(2);
}
if (config.help) {
  console.log(BENCH_USAGE);
  Deno.exit(0);
}
try {
  const report = await runBench(config, (l) => console.error(l));
  console.log(formatTable(report.results));
  const path = await saveReport(config.outDir, report);
  console.log(
    `\n${report.mode} run, ${
      report.pinned ? "pinned (server CPU 0, load CPU 1)" : "not pinned"
    }; saved ${path}`,
  );
  Deno.exit(report.results.every((r) => r.ok) ? 0 : 1);
} catch (err) {
  console.error(`bench: ${(err as Error).message}`);
  Deno.exit(1);
}
