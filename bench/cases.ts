/**
 * The benchmark's cases: the shared compare.sh's six plus memory and the
 * edge pair, each in a full and a `--short` (CI smoke) size.
 *
 * Names match compare.sh so a row here can be read beside the Go tool's.
 * `group` says which server instance a case runs on: throughput cases share
 * one, memory gets a fresh server so its RSS is not inflated by earlier
 * load, and edge cases need the edge in front of a core.
 *
 * @module
 */

/** One case: a load scenario with its flags for `bench/load_main.ts`. */
export interface BenchCase {
  name: string;
  scenario:
    | "unary"
    | "fanout"
    | "upload"
    | "chat"
    | "memory"
    | "web_unary"
    | "web_stream";
  group: "core" | "memory" | "edge";
  args: Record<string, number>;
  /** What the case stands beside: the direct case for an edge case. */
  compareWith?: string;
}

/** Timing flags of every timed case. */
export interface Timing {
  d: number;
  warmup: number;
  drain: number;
}

/** Full size: compare.sh's defaults (5 s timed, 1 s warm-up). */
export const FULL_TIMING: Timing = Object.freeze({ d: 5, warmup: 1, drain: 2 });
/** Smoke size: a few hundred ms each, for CI. */
export const SHORT_TIMING: Timing = Object.freeze({
  d: 0.3,
  warmup: 0.1,
  drain: 0.5,
});

/** All cases at full (`short = false`) or smoke size. */
export function benchCases(short: boolean, duration?: number): BenchCase[] {
  const t = { ...(short ? SHORT_TIMING : FULL_TIMING) };
  if (duration !== undefined) t.d = duration;
  const pick = (full: number, smoke: number) => short ? smoke : full;
  return [
    {
      name: "unary_c16_k1",
      scenario: "unary",
      group: "core",
      args: { ...t, c: 16, conns: 1 },
    },
    {
      name: "unary_c64_k4",
      scenario: "unary",
      group: "core",
      args: { ...t, c: 64, conns: 4 },
    },
    {
      name: "fanout_s10_p1",
      scenario: "fanout",
      group: "core",
      args: { ...t, subs: 10, pubc: 1, conns: 1 },
    },
    {
      name: "fanout_s100_p4",
      scenario: "fanout",
      group: "core",
      args: { ...t, subs: pick(100, 20), pubc: 4, conns: 4 },
    },
    {
      name: "upload_n200k",
      scenario: "upload",
      group: "core",
      args: { n: pick(200_000, 5_000) },
    },
    {
      name: "chat_n20k",
      scenario: "chat",
      group: "core",
      args: { n: pick(20_000, 500) },
    },
    {
      name: "memory_idle10k",
      scenario: "memory",
      group: "memory",
      args: {
        subs: pick(10_000, 300),
        conns: pick(20, 2),
        rooms: 100,
        "settle-ms": pick(2000, 200),
      },
    },
    {
      // The target: 100 connections × 1,000 streams, ≤ 1 GB RSS.
      name: "memory_idle100k",
      scenario: "memory",
      group: "memory",
      args: {
        subs: pick(100_000, 2_000),
        conns: pick(100, 2),
        rooms: 100,
        "settle-ms": pick(2000, 200),
      },
    },
    {
      name: "memory_idle100k_room1",
      scenario: "memory",
      group: "memory",
      args: {
        subs: pick(100_000, 2_000),
        conns: pick(100, 2),
        rooms: 1,
        "settle-ms": pick(2000, 200),
      },
    },
    {
      name: "web_unary_c16",
      scenario: "web_unary",
      group: "edge",
      args: { ...t, c: 16 },
      compareWith: "unary_c16_k1",
    },
    {
      name: "connect_unary_c16",
      scenario: "web_unary",
      group: "edge",
      args: { ...t, c: 16, connect: 1 },
      compareWith: "unary_c16_k1",
    },
    {
      name: "web_stream_s10",
      scenario: "web_stream",
      group: "edge",
      args: { ...t, subs: 10 },
      compareWith: "fanout_s10_p1",
    },
  ];
}

/** An upper bound on one case's wall time, for the watchdog. */
export function caseTimeLimitS(c: BenchCase): number {
  const a = c.args;
  return 30 + (a.warmup ?? 0) + (a.d ?? 0) + (a.drain ?? 0) + (a.n ?? 0) / 500 +
    (a.subs ?? 0) / 200;
}
