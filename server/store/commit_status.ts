/**
 * The commit counters every store keeps: health (ok until a commit fails,
 * ok again after one succeeds) and commit latency.
 */
import type { StoreStatus } from "../rooms/history_store.ts";

export class CommitStatus {
  #status: {
    state: "ok" | "down";
    error?: string;
    commits: number;
    failedCommits: number;
    lastCommitMs: number;
    totalCommitMs: number;
  } = {
    state: "ok",
    commits: 0,
    failedCommits: 0,
    lastCommitMs: 0,
    totalCommitMs: 0,
  };

  /** A copy, so that callers cannot change the counters. */
  snapshot(): StoreStatus {
    return { ...this.#status };
  }

  ok(ms: number): void {
    const s = this.#status;
    s.state = "ok";
    s.error = undefined;
    s.commits++;
    s.lastCommitMs = ms;
    s.totalCommitMs += ms;
  }

  failed(err: unknown): void {
    const s = this.#status;
    s.state = "down";
    s.error = err instanceof Error ? err.message : String(err);
    s.failedCommits++;
  }
}
