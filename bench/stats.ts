/**
 * Latency statistics and rounding shared by the load scenarios.
 *
 * Percentiles are nearest-rank over all samples, as in the Go `chatload`
 * tool, so the two tools' p50/p99 are the same statistic.
 *
 * @module
 */

/** Rounds to one decimal (rates and microseconds). */
export function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

/** Rounds to four decimals (seconds). */
export function round4(v: number): number {
  return Math.round(v * 1e4) / 1e4;
}

/** Nearest-rank quantile `q` of ascending `sorted`; NaN when empty. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(
    sorted.length - 1,
    Math.max(0, Math.ceil(q * sorted.length) - 1),
  );
  return sorted[i];
}

/**
 * `{prefix}p50_us`, `p90`, `p99`, `max` of latencies given in milliseconds
 * (`performance.now()` deltas), in microseconds; nulls when there are none.
 */
export function latencyFields(
  prefix: string,
  msSamples: number[],
): Record<string, number | null> {
  if (msSamples.length === 0) {
    return {
      [`${prefix}p50_us`]: null,
      [`${prefix}p99_us`]: null,
      [`${prefix}max_us`]: null,
    };
  }
  const s = Float64Array.from(msSamples).sort();
  const us = (v: number) => round1(v * 1000);
  return {
    [`${prefix}p50_us`]: us(quantile(s, 0.5)),
    [`${prefix}p90_us`]: us(quantile(s, 0.9)),
    [`${prefix}p99_us`]: us(quantile(s, 0.99)),
    [`${prefix}max_us`]: us(s[s.length - 1]),
  };
}

/** This process's user+system CPU seconds so far. */
export function selfCpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / clockTicks();
}

let ticks = 0;
/** `getconf CLK_TCK`; 100 on every Linux we run on, read once to be sure. */
export function clockTicks(): number {
  if (ticks === 0) {
    try {
      const out = new Deno.Command("getconf", { args: ["CLK_TCK"] })
        .outputSync();
      ticks = Number(new TextDecoder().decode(out.stdout).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
