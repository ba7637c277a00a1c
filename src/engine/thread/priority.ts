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
 * Nice levels the layout thread runs below the process: below the engine too, so that laying out
 * a swap's routes takes the CPU a pass leaves idle rather than stalling the pass (a pass waits for
 * the slowest of its pool threads, and one preempted stalls them all).
 */
export const LAYOUT_NICE = 19;
