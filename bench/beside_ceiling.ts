/**
 * The core beside the runtime's ceiling, in the same minutes: runs the
 * independent `../shared/bench/compare.sh` (the seed's Go server against a
 * target, chatload as the load) once per round for the core and once for
 * the bare server of `bench/ceiling/deno_listen_h2.ts`, alternating, and
 * prints per case the median of each round's ratio to the seed it ran
 * beside, for both, and the core's share of the ceiling.
 *
 * This is how issue 15's targets are read on a noisy machine: a ratio is
 * taken against the seed measured back to back, never against a median of
 * other minutes, and "at the ceiling" means the core's ratio over the
 * ceiling's from neighbouring rounds.
 *
 * ```sh
 * deno run -A bench/beside_ceiling.ts                      # 3 rounds, all six cases, D=5
 * deno run -A bench/beside_ceiling.ts --rounds 5 --cases "unary_c16_k1 chat_n20k"
 * TOKEN=$(deno task token --user bench --ttl 2h) deno run -A bench/beside_ceiling.ts --core-flags ""
 * ```
 *
 * With `TOKEN` set, compare.sh sends it on every call; the core then needs
 * the secret (`CHAT_JWT_SECRET` in its environment); the ceiling ignores it.
 * Raw runs stay in `--out` (one compare.sh JSON-lines file per run).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath as fromFileUrl } from "node:url";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    d: { type: "string", default: "5" },
    cases: { type: "string" },
    "core-flags": { type: "string", default: "" },
    compare: {
      type: "string",
      default: fromFileUrl(
        new URL("../../shared/bench/compare.sh", import.meta.url),
      ),
    },
    out: { type: "string", default: ".bench/beside_ceiling" },
  },
});

/** One chatload result line as compare.sh writes it. */
interface Row {
  server: string;
  case: string;
  ok?: boolean;
  [metric: string]: unknown;
}

/** What is read per case, and whether a larger value is better. */
const METRICS: Record<string, [key: string, label: string, higher: boolean][]> =
  {
    unary: [
      ["calls_per_s", "calls/s", true],
      ["p99_us", "p99", false],
    ],
    fanout: [
      ["delivered_per_s", "delivered/s", true],
      ["delivery_p99_us", "delivery p99", false],
    ],
    upload: [["msgs_per_s", "msgs/s", true]],
    chat: [
      ["pipelined_msgs_per_s", "pipelined msgs/s", true],
      ["pingpong_p50_us", "ping-pong p50", false],
    ],
  };

const here = fromFileUrl(new URL("..", import.meta.url));
const targets = {
  core: `deno run -A server/main.ts --port {port} ${values["core-flags"]}`,
  ceiling: "deno run -A bench/ceiling/deno_listen_h2.ts --port {port}",
};
await Deno.mkdir(values.out, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, "-");
const runs: Record<keyof typeof targets, Row[][]> = { core: [], ceiling: [] };
const rounds = Number(values.rounds);
for (let round = 1; round <= rounds; round++) {
  for (const name of ["core", "ceiling"] as const) {
    const outf = `${values.out}/${stamp}-${round}-${name}.jsonl`;
    const dataDir = await Deno.makeTempDir({ prefix: "beside-ceiling-" });
    const env: Record<string, string> = {
      ROUNDS: "1",
      D: values.d,
      OUTF: outf,
      CHAT_DATA_DIR: dataDir,
    };
    if (values.cases) env.CASES = values.cases;
    const { code } = await new Deno.Command(values.compare!, {
      args: [targets[name]],
      cwd: here,
      env,
      stdout: "null",
      stderr: "inherit",
    }).output();
    await Deno.remove(dataDir, { recursive: true });
    if (code !== 0) throw new Error(`compare.sh exited with ${code}`);
    const rows = (await Deno.readTextFile(outf)).split("\n")
      .filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Row);
    runs[name].push(rows);
    console.error(`round ${round}/${rounds}: ${name} done`);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Per run: the target's value over the seed's, as "better is above 1". */
function ratios(name: "core" | "ceiling", c: string, key: string): number[] {
  const out: number[] = [];
  for (const rows of runs[name]) {
    const seed = rows.find((r) => r.server === "seed" && r.case === c);
    const mine = rows.find((r) => r.server === "target" && r.case === c);
    const a = seed?.[key], b = mine?.[key];
    if (typeof a === "number" && typeof b === "number" && a > 0 && b > 0) {
      out.push(b / a);
    }
  }
  return out;
}

const fmt = (xs: number[]) =>
  xs.length === 0
    ? "-"
    : `${median(xs).toFixed(2)}x (${Math.min(...xs).toFixed(2)}-${
      Math.max(...xs).toFixed(2)
    })`;
const cases = [...new Set(runs.core.flat().map((r) => r.case))];
console.log(
  `| case | metric | core / seed | ceiling / seed | core against the ceiling (1: at it) |`,
);
console.log(`| --- | --- | --- | --- | --- |`);
for (const c of cases) {
  for (const [key, label, higher] of METRICS[c.split("_")[0]] ?? []) {
    const core = ratios("core", c, key);
    const ceiling = ratios("ceiling", c, key);
    // The same round's pair: neighbouring minutes.
    const share = core.slice(0, ceiling.length).map((x, i) =>
      higher ? x / ceiling[i] : ceiling[i] / x
    );
    console.log(
      `| ${c} | ${label}${higher ? "" : " (lower is better)"} | ${
        fmt(core)
      } | ${fmt(ceiling)} | ${fmt(share)} |`,
    );
  }
}
const bad = [...runs.core, ...runs.ceiling].flat().filter((r) => !r.ok);
console.log(
  `\n${rounds} rounds of each, ratios are per round against the seed run beside it; runs not ok: ${bad.length}`,
);
