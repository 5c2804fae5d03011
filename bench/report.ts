/**
 * The benchmark's outputs: a fixed-width table for the terminal and
 * BENCHMARKS.md, and the JSON file with every raw field.
 *
 * Each scenario has different headline numbers, so the table maps them onto
 * common columns (rate, p50, p99, notes) rather than one column per field;
 * the JSON keeps everything.
 *
 * @module
 */

/** One case's row: the load tool's JSON plus what the runner measured. */
export type CaseResult = Record<string, unknown> & {
  case: string;
  ok: boolean;
};

/** The saved file. */
export interface BenchReport {
  date: string;
  mode: "full" | "short";
  server_cmd: string;
  edge_cmd: string | null;
  pinned: boolean;
  cpus: number;
  deno: string;
  label?: string;
  results: CaseResult[];
}

const n = (v: unknown) => typeof v === "number" ? v : NaN;
const fmt = (v: unknown, digits = 0) =>
  typeof v === "number" && Number.isFinite(v)
    ? v.toLocaleString("en-US", {
      maximumFractionDigits: digits,
      minimumFractionDigits: digits,
    })
    : "-";
const ms = (us: unknown) =>
  typeof us === "number" ? `${fmt(us / 1000, 2)} ms` : "-";

/** Rate, its unit, p50, p99 and notes of one result. */
export function headline(r: CaseResult): [string, string, string, string] {
  const cpu = typeof r.server_cpu_us_per_op === "number"
    ? `server ${fmt(r.server_cpu_us_per_op, 1)} us/op`
    : "";
  const edge = typeof r.edge_cpu_us_per_op === "number"
    ? `edge ${fmt(r.edge_cpu_us_per_op, 1)} us/op`
    : "";
  // The load process's CPU share: near 100% means the numbers are bounded
  // by the load generator, not by the server.
  const load =
    typeof r.client_cpu_s === "number" && typeof r.wall_s === "number" &&
      r.wall_s > 0
      ? `load ${Math.round((100 * r.client_cpu_s) / r.wall_s)}% CPU`
      : "";
  const notes = (...xs: string[]) => [...xs, load].filter(Boolean).join("; ");
  if (r.skipped) return ["-", "-", "-", String(r.skipped)];
  switch (r.scenario) {
    case "unary":
    case "web_unary":
      return [
        `${fmt(r.calls_per_s)} calls/s`,
        ms(r.p50_us),
        ms(r.p99_us),
        notes(cpu, edge),
      ];
    case "fanout":
    case "web_stream":
      return [
        `${fmt(r.delivered_per_s)} deliveries/s`,
        ms(r.delivery_p50_us),
        ms(r.delivery_p99_us),
        notes(`lost ${fmt(r.lost)}/${fmt(r.expected)}`, cpu, edge),
      ];
    case "upload":
      return [
        `${fmt(r.msgs_per_s)} msgs/s`,
        "-",
        "-",
        notes(`count ok: ${r.count_ok}`, cpu),
      ];
    case "chat":
      return [
        `${fmt(r.pipelined_msgs_per_s)} msgs/s pipelined`,
        ms(r.pingpong_p50_us),
        ms(r.pingpong_p99_us),
        notes(`${fmt(r.pingpong_rtt_per_s)} rtt/s ping-pong`, cpu),
      ];
    case "memory":
      return [
        `${fmt(r.rss_mb, 1)} MB RSS`,
        "-",
        "-",
        `${fmt(r.welcomed)} subs in ${fmt(r.rooms)} room(s) over ${
          fmt(r.conns)
        } conns, ${fmt(r.rss_per_sub_kb, 1)} KB/sub over ${
          fmt(r.rss_before_mb, 1)
        } MB idle; peak ${fmt(r.hwm_mb, 1)} MB`,
      ];
    default:
      return ["-", "-", "-", String(r.skipped ?? r.error ?? "")];
  }
}

/** A Markdown table of all results (renders as plain text too). */
export function formatTable(results: CaseResult[]): string {
  const rows = [["case", "result", "p50", "p99", "notes", "ok"]];
  for (const r of results) {
    const [rate, p50, p99, notes] = headline(r);
    const status = r.skipped
      ? "skipped"
      : r.ok
      ? "ok"
      : `FAILED ${r.error ?? r.first_error ?? ""}`;
    rows.push([r.case, rate, p50, p99, notes, status]);
  }
  const widths = rows[0].map((_, i) =>
    Math.max(...rows.map((r) => r[i].length))
  );
  const line = (r: string[]) =>
    `| ${r.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [
    line(rows[0]),
    line(widths.map((w) => "-".repeat(w))),
    ...rows.slice(1).map(line),
  ]
    .join("\n");
}

/** CPU microseconds per operation, or undefined when there were none. */
export function usPerOp(cpuSeconds: number, ops: unknown): number | undefined {
  const k = n(ops);
  return k > 0 ? Math.round((cpuSeconds / k) * 1e7) / 10 : undefined;
}

/** Writes the report as `<dir>/results-<date>.json`; returns the path. */
export async function saveReport(
  dir: string,
  report: BenchReport,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const stamp = report.date.replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const path = `${dir}/results-${stamp}${
    report.mode === "short" ? "-short" : ""
  }.json`;
  await Deno.writeTextFile(path, JSON.stringify(report, null, 2) + "\n");
  return path;
}
