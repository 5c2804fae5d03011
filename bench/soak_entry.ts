/**
 * Runs a process of the stack (`SOAK_ENTRY`, e.g. `../server/main.ts`, with
 * the process's own arguments) for bench/soak.ts, and every
 * `SOAK_MEMORY_MS` (default 5,000) forces a full garbage collection and
 * writes `Deno.memoryUsage()` as JSON to `SOAK_MEMORY_FILE`: the live heap,
 * which the soak compares over time, rather than a heap that V8 grows and
 * collects lazily. Needs `--v8-flags=--expose-gc`; without it the numbers
 * are written uncollected.
 *
 * A measuring tool only, not part of the product.
 *
 * @module
 */
const file = Deno.env.get("SOAK_MEMORY_FILE");
const entry = Deno.env.get("SOAK_ENTRY");
if (entry === undefined) {
  console.error("soak_entry: set SOAK_ENTRY to the module to run");
  Deno.exit(2);
}
if (file !== undefined) {
  const gc = (globalThis as { gc?: () => void }).gc;
  const timer = setInterval(() => {
    gc?.();
    const m = Deno.memoryUsage();
    Deno.writeTextFileSync(
      `${file}.tmp`,
      JSON.stringify({ ...m, collected: gc !== undefined, at: Date.now() }),
    );
    Deno.renameSync(`${file}.tmp`, file);
  }, Number(Deno.env.get("SOAK_MEMORY_MS") ?? 5000));
  Deno.unrefTimer(timer);
}
await import(new URL(entry, import.meta.url).href);
