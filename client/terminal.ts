/**
 * The chat's terminal when stdin is a TTY: a prompt line that survives
 * incoming messages.
 *
 * Written lines would otherwise land in the middle of what the user is typing.
 * `node:readline` (Node's line editor, which Deno implements) owns the input
 * line (editing keys, history); each output line clears the prompt line,
 * prints, and redraws the prompt with the text typed so far and the cursor
 * where it was. Ctrl-C and Ctrl-D on an empty line end the input.
 *
 * @module
 */
import * as readline from "node:readline";
import process from "node:process";
import type { ChatIO } from "./chat.ts";

/** A terminal session; `close()` restores the terminal. */
export interface TerminalIO extends ChatIO {
  close(): void;
}

/** Opens the prompt line `prompt` on the process's terminal. */
export function openTerminal(prompt: string): TerminalIO {
  const rl = readline.createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal: true,
    prompt,
    historySize: 100,
  });
  let closed = false;
  const leave = new AbortController();
  rl.on("close", () => {
    closed = true;
    leave.abort();
  });
  // In raw mode Ctrl-C reaches readline, not the process's signal handler.
  rl.on("SIGINT", () => rl.close());
  const write = (stream: NodeJS.WritableStream, line: string) => {
    if (closed) return void stream.write(`${line}\n`);
    readline.clearLine(process.stdout, 0);
    readline.cursorTo(process.stdout, 0);
    stream.write(`${line}\n`);
    rl.prompt(true);
  };
  async function* lines(): AsyncGenerator<string> {
    rl.prompt();
    for await (const line of rl) {
      yield line;
      if (!closed) rl.prompt();
    }
  }
  return {
    lines: lines(),
    out: (line) => write(process.stdout, line),
    err: (line) => write(process.stderr, line),
    signal: leave.signal,
    close: () => rl.close(),
  };
}
