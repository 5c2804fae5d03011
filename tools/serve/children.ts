/**
 * Helpers for running child processes side by side in one terminal.
 */

/**
 * Copies a child's output line by line, each line as `tag` makes it (behind
 * a prefix, or into a JSON object), and hands each line as it came to
 * `onLine` as it passes.
 */
export async function tagLines(
  source: ReadableStream<Uint8Array>,
  tag: (line: string) => string,
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
        encoder.encode(lines.map((l) => tag(l) + "\n").join("")),
      );
      lines.forEach(onLine);
    }
  }
  if (pending) {
    await sink.write(encoder.encode(tag(pending) + "\n"));
    onLine(pending);
  }
}
