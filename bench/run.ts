/**
 * Runs the benchmark: servers up, one pinned load process per case, CPU and
 * memory read from /proc, servers down.
 *
 * Throughput cases share one server instance (as compare.sh does); the
 * memory case gets a fresh one so earlier load does not inflate its RSS; the
 * edge cases start a core and the edge in front of it, both on the server
 * CPU. Every load process has a watchdog, so a hung server costs a bounded
 * time and shows as a failed row rather than a stuck run.
 *
 * @module
 */
import { type BenchCase, benchCases, caseTimeLimitS } from "./cases.ts";
import type { BenchConfig } from "./config.ts";
import { groupCpuSeconds } from "./procfs.ts";
import { canPin, pinArgs, type ServerProcess, startServer } from "./procs.ts";
import { type BenchReport, type CaseResult, usPerOp } from "./report.ts";

const SERVER_CPU = 0, LOAD_CPU = 1;
const loadMain = new URL("./load_main.ts", import.meta.url).pathname;

/** Runs the selected cases; `log` gets one progress line per case. */
export async function runBench(
  config: BenchConfig,
  log: (l: string) => void,
): Promise<BenchReport> {
  const pin = config.pin && canPin();
  const all = benchCases(config.short, config.duration);
  const unknown = config.cases.filter((c) => !all.some((k) => k.name === c));
  if (unknown.length > 0) {
    throw new Error(`unknown case(s): ${unknown.join(", ")}`);
  }
  const selected = all.filter((c) =>
    config.cases.length === 0 || config.cases.includes(c.name)
  );
  const logs = `${config.outDir}/logs`;
  await Deno.mkdir(logs, { recursive: true });
  const serverCpu = pin ? SERVER_CPU : undefined;
  const results: CaseResult[] = [];

  const group = async (
    name: BenchCase["group"],
    body: (cases: BenchCase[]) => Promise<void>,
  ) => {
    const cases = selected.filter((c) => c.group === name);
    if (cases.length > 0) await body(cases);
  };

  await group("core", async (cases) => {
    // A server that died during a case (Deno's http2 fault on GOAWAY) is
    // restarted for the next one, and the row says so.
    let restarts = 0;
    const start = () =>
      startServer(config.serverCmd, {
        cpu: serverCpu,
        logPath: `${logs}/core-${restarts}.log`,
      });
    let core = await start();
    try {
      for (const c of cases) {
        if (!core.alive()) {
          log(
            `server exited before ${c.name}; restarting (see ${logs}/core-${restarts}.log)`,
          );
          await core.stop();
          restarts++;
          core = await start();
        }
        const r = await measure(c, core, undefined, pin, log);
        if (!core.alive()) {
          r.server_died = true;
          r.ok = false;
          r.error = "server exited during the case";
        }
        results.push(r);
      }
    } finally {
      await core.stop();
    }
  });

  await group("memory", async (cases) => {
    for (const c of cases) {
      const core = await startServer(config.serverCmd, {
        cpu: serverCpu,
        logPath: `${logs}/memory.log`,
      });
      try {
        await new Promise((r) => setTimeout(r, 500)); // let start-up allocation settle
        results.push(
          await measure(c, core, undefined, pin, log, {
            "server-pgid": core.pid,
          }),
        );
      } finally {
        await core.stop();
      }
    }
  });

  await group("edge", async (cases) => {
    if (config.edgeCmd === null) {
      for (const c of cases) {
        results.push({
          case: c.name,
          scenario: c.scenario,
          ok: true,
          skipped: "no edge (edge/main.ts absent or --no-edge)",
        });
        log(`${c.name}: skipped, no edge`);
      }
      return;
    }
    const core = await startServer(config.serverCmd, {
      cpu: serverCpu,
      logPath: `${logs}/edge-core.log`,
    });
    try {
      const edge = await startServer(config.edgeCmd, {
        cpu: serverCpu,
        logPath: `${logs}/edge.log`,
        vars: { upstream: `http://127.0.0.1:${core.port}` },
      });
      try {
        for (const c of cases) {
          results.push(await measure(c, core, edge, pin, log));
        }
      } finally {
        await edge.stop();
      }
    } finally {
      await core.stop();
    }
  });

  return {
    date: new Date().toISOString(),
    mode: config.short ? "short" : "full",
    server_cmd: config.serverCmd,
    edge_cmd: config.edgeCmd,
    pinned: pin,
    cpus: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    ...(config.label ? { label: config.label } : {}),
    results,
  };
}

/** One case: a pinned load process, with the servers' CPU time around it. */
async function measure(
  c: BenchCase,
  core: ServerProcess,
  edge: ServerProcess | undefined,
  pin: boolean,
  log: (l: string) => void,
  extra: Record<string, number> = {},
): Promise<CaseResult> {
  const flags = Object.entries({ ...c.args, ...extra }).flatMap((
    [k, v],
  ) => [`--${k}`, String(v)]);
  if (edge) flags.push("--edge", `http://127.0.0.1:${edge.port}`);
  const cmd = [
    ...pinArgs(pin ? LOAD_CPU : undefined),
    Deno.execPath(),
    "run",
    "-A",
    loadMain,
    "--scenario",
    c.scenario,
    "--addr",
    `127.0.0.1:${core.port}`,
    "--label",
    c.name,
    ...flags,
  ];
  const cpu0 = groupCpuSeconds(core.pid),
    edge0 = edge ? groupCpuSeconds(edge.pid) : 0;
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(caseTimeLimitS(c) * 1000),
  }).output();
  const serverCpu = groupCpuSeconds(core.pid) - cpu0;
  const edgeCpu = edge ? groupCpuSeconds(edge.pid) - edge0 : 0;
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ??
    "";
  let r: CaseResult;
  try {
    r = { ...JSON.parse(text), case: c.name };
  } catch {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(
      -3,
    ).join(" / ");
    r = {
      case: c.name,
      scenario: c.scenario,
      ok: false,
      error: out.signal
        ? `killed after ${caseTimeLimitS(c)} s`
        : err || "no output",
    };
  }
  r.server_cpu_s = Math.round(serverCpu * 100) / 100;
  const perOp = usPerOp(serverCpu, r.ops_total);
  if (perOp !== undefined) r.server_cpu_us_per_op = perOp;
  if (edge) {
    r.edge_cpu_s = Math.round(edgeCpu * 100) / 100;
    const e = usPerOp(edgeCpu, r.ops_total);
    if (e !== undefined) r.edge_cpu_us_per_op = e;
  }
  if (c.compareWith) r.compare_with = c.compareWith;
  log(`${c.name}: ${r.ok ? "ok" : "FAILED"} (${r.wall_s ?? "?"} s)`);
  return r;
}
