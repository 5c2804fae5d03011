/**
 * Readers for /proc: memory and CPU time of a process group.
 *
 * The server under test is started with `setsid`, so its pid is also its
 * process group id, and a task runner or a supervisor with children is
 * measured as a whole (as the shared compare.sh does).
 *
 * @module
 */
import { clockTicks } from "./stats.ts";

function statFields(pid: number): string[] | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Field 2 (comm) may hold spaces; everything after the last ")" is fixed.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/**
 * Pids whose process group is `pgid` (the leader included), and their
 * descendants in groups of their own: a supervisor starts its children
 * `detached` (the edge's `--procs`, supervisor/), and they are part of what
 * is measured.
 */
export function groupPids(pgid: number): number[] {
  const parent = new Map<number, number>();
  const pids = new Set<number>();
  for (const e of Deno.readDirSync("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid)) continue;
    const f = statFields(pid);
    if (f === undefined) continue;
    parent.set(pid, Number(f[1]));
    if (Number(f[2]) === pgid) pids.add(pid);
  }
  for (let grew = pids.size > 0; grew;) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (!pids.has(pid) && pids.has(ppid)) {
        pids.add(pid);
        grew = true;
      }
    }
  }
  return pids.size > 0 ? [...pids] : [pgid];
}

/** User+system CPU seconds of the group's live processes (see groupPids). */
export function groupCpuSeconds(pgid: number): number {
  let ticks = 0;
  for (const pid of groupPids(pgid)) {
    const f = statFields(pid);
    if (f) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / clockTicks();
}

/** Summed VmRSS and VmHWM (peak) of the group, in KiB. */
export function groupMemoryKb(
  pgid: number,
): { rssKb: number; hwmKb: number; pids: number } {
  let rssKb = 0, hwmKb = 0;
  const pids = groupPids(pgid);
  for (const pid of pids) {
    try {
      const status = Deno.readTextFileSync(`/proc/${pid}/status`);
      rssKb += Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      hwmKb += Number(/^VmHWM:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    } catch {
      // The process ended between listing and reading.
    }
  }
  return { rssKb, hwmKb, pids: pids.length };
}
