/**
 * Helpers for running child processes side by side in one terminal.
 */

/** Copies a child's output line by line, each line behind `prefix`. */
export async function prefixLines(
  source: ReadableStream<Uint8Array>,
  prefix: string,
  sink: { write(p: Uint8Array): Promise<number> },
): Promise<void> {
  const encoder = new TextEncoder();
  let pending = "";
  for await (const chunk of source.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    if (lines.length) {
      await sink.write(
        encoder.encode(lines.map((l) => prefix + l + "\n").join("")),
      );
    }
  }
  if (pending) await sink.write(encoder.encode(prefix + pending + "\n"));
}

/** Polls a health URL until it answers 200, or gives up after `timeoutMs`. */
export async function waitHealthy(
  url: string,
  timeoutMs: number,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      const res = await fetch(url);
      await res.body?.cancel();
      if (res.ok) return true;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}
