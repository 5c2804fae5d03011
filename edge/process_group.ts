/**
 * N edge processes on one port: the self-hosted edge's way to use more than
 * one CPU core (`--procs N`).
 *
 * Each child is a whole edge (`edge/main.ts`) that listens with
 * `Deno.serve({ reusePort: true })`, so the kernel (Linux SO_REUSEPORT)
 * spreads new connections over the children; one JavaScript thread each,
 * nothing shared. A child is kept running by the core's supervisor
 * (`supervisor/supervisor.ts`): one that dies is restarted after 100 ms
 * while the others keep serving (its open calls fail), with the delay
 * doubling while it keeps dying before it listens. The group gives up, and
 * stops every child, when one child cannot start as configured (exit 2: a
 * bad value, the port taken by something else) or has died 10 times in a
 * row before listening. SIGINT/SIGTERM stop them all gracefully.
 *
 * The port is chosen once for all: with `--port 0` the parent finds a free
 * port and hands it to every child, since each would otherwise pick its
 * own.
 *
 * Only `edge/main.ts` calls this; on Deno Deploy (`edge/deploy.ts`) the
 * platform runs the instances.
 *
 * @module
 */
import {
  superviseChild,
  type Supervisor,
  type SupervisorExit,
} from "../supervisor/supervisor.ts";

/** What {@linkcode startProcessGroup} needs. */
export interface ProcessGroupOptions {
  /** How many children. */
  procs: number;
  host: string;
  /** 0: a free port, found here, for all children. */
  port: number;
  /** Executable and arguments of one child serving on `port`. */
  command(port: number): { cmd: string; args: string[] };
  /** The children's environment (the parent's, plus what marks a child). */
  env(index: number): Record<string, string>;
  /** Lifecycle lines of the group and of the supervisors. */
  log(line: string): void;
  /** Each stdout line of a child (their call and lifecycle lines). */
  output?(line: string): void;
  baseDelayMs?: number;
  maxDelayMs?: number;
  giveUpAfter?: number;
}

/** A running group. */
export interface ProcessGroup {
  /** The port every child serves on. */
  readonly port: number;
  /** The pids of the children running now. */
  pids(): number[];
  /** Settles once every child listens (at least once). */
  readonly ready: Promise<void>;
  /**
   * Settles when the group is over: stopped, or given up because one child
   * could not be kept running (then with that child's exit code).
   */
  readonly done: Promise<SupervisorExit>;
  /** Forwards `signal` to every child and waits for all to exit. */
  stop(signal?: Deno.Signal): Promise<SupervisorExit>;
}

/** A free TCP port on `host` (closed again before the children bind it). */
function freePort(host: string): number {
  const listener = Deno.listen({ hostname: host, port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Starts `procs` children on one port; see the module comment. */
export function startProcessGroup(options: ProcessGroupOptions): ProcessGroup {
  const port = options.port === 0 ? freePort(options.host) : options.port;
  const { cmd, args } = options.command(port);
  const readies: Promise<void>[] = [];
  const members: Supervisor[] = [];
  for (let i = 0; i < options.procs; i++) {
    let listening!: () => void;
    readies.push(new Promise<void>((r) => listening = r));
    members.push(superviseChild({
      cmd,
      args,
      env: options.env(i),
      baseDelayMs: options.baseDelayMs,
      maxDelayMs: options.maxDelayMs,
      giveUpAfter: options.giveUpAfter,
      log: (line) =>
        options.log(line.replace(/^supervisor: /, `process ${i}: `)),
      output: options.output,
      onEvent: (e) => {
        if (e.type === "ready") listening();
      },
    }));
  }
  let stopping: Promise<SupervisorExit> | undefined;
  const stop = (signal: Deno.Signal = "SIGTERM") =>
    stopping ??= (async () => {
      const exits = await Promise.all(members.map((m) => m.stop(signal)));
      return exits.find((e) => e.code !== 0) ?? exits[0];
    })();
  // The first child whose supervisor ends on its own ends the group.
  const done = Promise.race(members.map((m) => m.done)).then(async (first) => {
    if (stopping) return await stopping;
    options.log(
      `a child could not be kept running (${first.reason}); stopping all`,
    );
    await stop("SIGTERM");
    return first;
  });
  return {
    port,
    pids: () => members.flatMap((m) => m.pid === undefined ? [] : [m.pid]),
    ready: Promise.all(readies).then(() => {}),
    done,
    stop: async (signal) => {
      await stop(signal);
      return await done;
    },
  };
}
