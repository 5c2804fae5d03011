/**
 * Prints the hottest functions of a V8 `.cpuprofile` (from `deno run
 * --cpu-prof`): self time and inclusive time, as shares of all samples.
 *
 * Used for the hot-spot notes in BENCHMARKS.md; a flame-graph viewer is not
 * available on a headless CI-like machine, a sorted table is.
 *
 * @example
 * ```sh
 * deno run -A bench/profile_top.ts .bench/prof/CPU.*.cpuprofile 25
 * ```
 *
 * @module
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** `name (file:line)` with the path shortened to what identifies it. */
function label(n: ProfileNode): string {
  const { functionName, url, lineNumber } = n.callFrame;
  const file = url.replace(
    /^.*\/node_modules\/\.deno\/([^/]+)\/node_modules\/[^/]+(\/[^/]+)?\//,
    "$1/",
  )
    .replace(/^file:\/\/\/work\/main\//, "").replace(/^ext:/, "ext:");
  return `${functionName || "(anonymous)"} (${file || "native"}${
    url ? `:${lineNumber + 1}` : ""
  })`;
}

/** Self and inclusive microseconds per function label, plus the total. */
export function summarize(p: Profile) {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const selfUs = new Map<number, number>();
  p.samples.forEach((id, i) =>
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0))
  );
  const self = new Map<string, number>(), incl = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    total += us;
    const l = label(byId.get(id)!);
    self.set(l, (self.get(l) ?? 0) + us);
    const seen = new Set<string>();
    for (
      let at: number | undefined = id;
      at !== undefined;
      at = parent.get(at)
    ) {
      const la = label(byId.get(at)!);
      if (!seen.has(la)) seen.add(la), incl.set(la, (incl.get(la) ?? 0) + us);
    }
  }
  return { self, incl, total };
}

if (import.meta.main) {
  const [path, topArg] = Deno.args;
  const top = Number(topArg ?? 20);
  const { self, incl, total } = summarize(
    JSON.parse(await Deno.readTextFile(path)),
  );
  const pct = (us: number) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
  const idle = ["(idle)", "(program)", "(garbage collector)", "(root)"];
  console.log(`total ${(total / 1e6).toFixed(2)} s sampled`);
  console.log("\nself time:");
  for (const [l, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${pct(us)}  ${l}`);
  }
  console.log("\ninclusive time (excluding root/idle):");
  for (
    const [l, us] of [...incl].filter(([l]) =>
      !idle.some((x) => l.startsWith(x))
    )
      .sort((a, b) => b[1] - a[1]).slice(0, top)
  ) console.log(`${pct(us)}  ${l}`);
}
