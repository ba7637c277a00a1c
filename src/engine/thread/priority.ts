import { readlinkSync } from "node:fs";
import { getPriority, setPriority } from "node:os";

/**
 * Lowers the calling thread's scheduling priority by `levels` nice levels (at most to 19), before
 * it starts any thread of its own, which inherits it. Linux only (a thread's id from
 * /proc/thread-self); elsewhere, or where not allowed, nothing changes.
 */
export function lowerThreadPriority(levels: number): void {
  try {
    const thread = Number(readlinkSync("/proc/thread-self").split("/").pop());
    setPriority(thread, Math.min(19, getPriority(thread) + levels));
  } catch {
    // Not Linux, or not allowed: the thread keeps its priority.
  }
}

/** Nice levels the engine's thread runs below the process (engine-worker.ts). */
export const ENGINE_NICE = 10;

/**
 * Nice levels the layout threads run below the process, below the engine: a fold takes mostly the
 * CPU that passes leave idle rather than stalling them (a pass waits for the slowest of its pool
 * threads, and one preempted stalls them all). How far below depends on what waits for the fold:
 *
 * - `traffic`: a route that requests use and that has no layout yet, served unfolded (slower)
 *   until its fold is done, however long the engine stays busy: far enough below not to stall
 *   passes much, not so far that the fold starves under steady load;
 * - `changes`: the routes a change replaces, after every swap (and pinned routes at load): as far
 *   below as it goes, since back-to-back swaps under load would otherwise keep stalling passes.
 */
export const LAYOUT_NICE = { traffic: 14, changes: 19 } as const;
