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
 * Nice levels the layout thread runs below the process: below the engine, so that a fold takes
 * mostly the CPU that passes leave idle rather than stalling them (a pass waits for the slowest of
 * its pool threads, and one preempted stalls them all), but not so far below that it starves: a
 * route is served unfolded until its fold is done, and at 19 a BERT-base fold under steady
 * one-client load took seconds more than at this level (bench/README.md, the scale benchmark).
 */
export const LAYOUT_NICE = 14;
