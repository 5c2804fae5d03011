/**
 * Helpers for running child processes side by side in one terminal.
 */

/**
 * Copies a child's output line by line, each line behind `prefix`, and
 * hands each line (without prefix) to `onLine` as it passes.
 */
export async function prefixLines(
  source: ReadableStream<Uint8Array>,
  prefix: string,
  sink: { write(p: Uint8Array): Promise<number> },
  onLine: (line: string) => void = () => {},
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
      lines.forEach(onLine);
    }
  }
  if (pending) {
    await sink.write(encoder.encode(prefix + pending + "\n"));
    onLine(pending);
  }
}
