/**
 * Keeps one child process serving: restarts it when it dies abnormally.
 *
 * The core runs on Deno's node:http2, which can abort the whole process on a
 * client's GOAWAY (see docs/goaway.md). Nothing inside the process can catch
 * that, so a parent brings the port back: it respawns the child within a
 * fraction of a second, backs off when the child keeps dying before it is
 * ready (a crash loop: bad flag, port taken), gives up after a bounded number
 * of such failures, and forwards SIGINT/SIGTERM so the child shuts down
 * gracefully. A child that exits with code 0 on its own is done, and so is
 * the supervisor; one that exits with code 2 cannot start as configured (a
 * bad flag, a port in use): it is not restarted, and the supervisor exits 2
 * too.
 *
 * @example
 * ```ts
 * const sup = superviseChild({ cmd: Deno.execPath(), args: ["run", "-A", "server/main.ts"] });
 * const exit = await sup.stop("SIGTERM");
 * ```
 *
 * @module
 */

/** How much a lifecycle line matters (JSON logs carry it). */
export type LogLevel = "info" | "warn" | "error";

/** What the supervisor reports as it goes; main.ts logs nothing per request. */
export type SupervisorEvent =
  | { type: "spawn"; pid: number; attempt: number }
  | { type: "ready"; pid: number; line: string; sinceExitMs?: number }
  | { type: "exit"; pid: number; code: number; signal: Deno.Signal | null }
  | { type: "restart"; delayMs: number; failures: number }
  | { type: "giveup"; failures: number }
  | { type: "badconfig"; pid: number };

export interface SupervisorOptions {
  /** Executable, e.g. `Deno.execPath()`. */
  cmd: string;
  args: string[];
  cwd?: string;
  env?: Record<string, string>;
  /** A child stdout line that says it is serving. */
  readyPattern?: RegExp;
  /** Delay before the first restart after a child that was ready. */
  baseDelayMs?: number;
  /** Cap of the doubling delay for children that die before ready. */
  maxDelayMs?: number;
  /** Consecutive deaths before ready after which the supervisor gives up. */
  giveUpAfter?: number;
  /** How long stop() waits after forwarding a signal before SIGKILL. */
  killAfterMs?: number;
  /**
   * One line per lifecycle event (spawn, ready, exit, restart, give up),
   * with its level: a restart after a crash is a warning, giving up an
   * error.
   */
  log?: (line: string, level: LogLevel) => void;
  /** Each stdout line of the child, passed on (default: console.log). */
  output?: (line: string) => void;
  onEvent?: (event: SupervisorEvent) => void;
}

/** How the supervisor ended. */
export interface SupervisorExit {
  /** Exit code the supervisor's own process should use. */
  code: number;
  reason: "clean-exit" | "stopped" | "gave-up" | "bad-config";
}

export interface Supervisor {
  /** The running child's pid, if one is running. */
  readonly pid: number | undefined;
  /** Children spawned after the first. */
  readonly restarts: number;
  /** Settles when the supervisor is done and no child is left. */
  readonly done: Promise<SupervisorExit>;
  /** Forwards the signal, stops restarting, waits for the child to exit. */
  stop(signal?: Deno.Signal): Promise<SupervisorExit>;
}

export const DEFAULT_READY_PATTERN = /listening on \S+:\d+/;

/** The exit code of a child that cannot start as configured: no restart. */
export const BAD_CONFIG_EXIT = 2;

/** Yields the lines of a byte stream (without their line ends). */
export async function* readLines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let rest = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + text).split("\n");
    rest = parts.pop()!;
    for (const part of parts) yield part.replace(/\r$/, "");
  }
  if (rest) yield rest;
}

/** Starts the child now and keeps it running until stopped or done. */
export function superviseChild(options: SupervisorOptions): Supervisor {
  const readyPattern = options.readyPattern ?? DEFAULT_READY_PATTERN;
  const baseDelayMs = options.baseDelayMs ?? 100;
  const maxDelayMs = options.maxDelayMs ?? 5_000;
  const giveUpAfter = options.giveUpAfter ?? 10;
  const killAfterMs = options.killAfterMs ?? 10_000;
  const log = options.log ?? ((line) => console.error(line));
  const output = options.output ?? ((line) => console.log(line));
  const emit = options.onEvent ?? (() => {});

  let child: Deno.ChildProcess | undefined;
  let lastPid = 0;
  let restarts = 0;
  let stopping = false;
  let wakeUp: (() => void) | undefined;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeUp = undefined;
        resolve();
      }
      wakeUp = done;
    });

  async function runOnce(
    attempt: number,
    lastExit: { at: number; how: string; delayMs: number } | undefined,
  ) {
    const proc = new Deno.Command(options.cmd, {
      args: options.args,
      cwd: options.cwd,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
      // Its own process group: a terminal's Ctrl-C reaches only us, and the
      // child gets exactly one forwarded signal, not two (a second one means
      // "exit now" to the core).
      detached: true,
    }).spawn();
    child = proc;
    emit({ type: "spawn", pid: proc.pid, attempt });
    if (lastExit) {
      log(
        `supervisor: child pid ${lastPid} exited (${lastExit.how}); restarted as pid ${proc.pid} after ${lastExit.delayMs} ms`,
        "warn",
      );
    } else log(`supervisor: started child pid ${proc.pid}`, "info");
    lastPid = proc.pid;
    let ready = false;
    const pump = (async () => {
      for await (const line of readLines(proc.stdout)) {
        output(line);
        if (!ready && readyPattern.test(line)) {
          ready = true;
          const sinceExitMs = lastExit &&
            Math.round(performance.now() - lastExit.at);
          emit({ type: "ready", pid: proc.pid, line, sinceExitMs });
        }
      }
    })();
    const status = await proc.status;
    await pump;
    child = undefined;
    emit({
      type: "exit",
      pid: proc.pid,
      code: status.code,
      signal: status.signal,
    });
    return { status, ready };
  }

  async function loop(): Promise<SupervisorExit> {
    let failures = 0;
    let lastExit: { at: number; how: string; delayMs: number } | undefined;
    for (let attempt = 0;; attempt++) {
      if (attempt > 0) restarts++;
      const { status, ready } = await runOnce(attempt, lastExit);
      const at = performance.now();
      const how = status.signal
        ? `signal ${status.signal}`
        : `code ${status.code}`;
      if (stopping) {
        log(`supervisor: child exited (${how}) after stop`, "info");
        return { code: status.code === 0 ? 0 : 1, reason: "stopped" };
      }
      if (status.success) {
        log("supervisor: child exited cleanly", "info");
        return { code: 0, reason: "clean-exit" };
      }
      if (status.code === BAD_CONFIG_EXIT && !status.signal) {
        // The child said why on stderr; restarting cannot help.
        emit({ type: "badconfig", pid: lastPid });
        return { code: BAD_CONFIG_EXIT, reason: "bad-config" };
      }
      failures = ready ? 0 : failures + 1;
      if (failures >= giveUpAfter) {
        emit({ type: "giveup", failures });
        log(
          `supervisor: child exited (${how}); ${failures} failures before ready, giving up`,
          "error",
        );
        return { code: 1, reason: "gave-up" };
      }
      const delayMs = Math.min(baseDelayMs * 2 ** failures, maxDelayMs);
      emit({ type: "restart", delayMs, failures });
      lastExit = { at, how, delayMs };
      await sleep(delayMs);
      if (stopping) {
        log(
          `supervisor: child pid ${lastPid} exited (${how}); stopped`,
          "info",
        );
        return { code: 0, reason: "stopped" };
      }
    }
  }

  const done = loop();

  return {
    get pid() {
      return child?.pid;
    },
    get restarts() {
      return restarts;
    },
    done,
    async stop(signal: Deno.Signal = "SIGTERM") {
      stopping = true;
      wakeUp?.();
      const running = child;
      if (running) {
        try {
          running.kill(signal);
        } catch {
          // Already exited: `done` settles on its own.
        }
        const timer = setTimeout(() => {
          log(`supervisor: child ignored ${signal}; killing it`, "warn");
          try {
            running.kill("SIGKILL");
          } catch {
            // Exited in the meantime.
          }
        }, killAfterMs);
        try {
          return await done;
        } finally {
          clearTimeout(timer);
        }
      }
      return await done;
    },
  };
}
