/** Small statistics and timing helpers shared by the benchmark's stages. */

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

/** Linear-interpolated quantile of unsorted values (q in [0, 1]). */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export interface RepeatPolicy {
  readonly warmup: number;
  readonly minReps: number;
  readonly maxReps: number;
  /** Keep repeating (up to maxReps) until this much time went into timed runs of each case. */
  readonly minSeconds: number;
}

export const FULL: RepeatPolicy = { warmup: 2, minReps: 7, maxReps: 40, minSeconds: 1.5 };
export const QUICK: RepeatPolicy = { warmup: 1, minReps: 2, maxReps: 2, minSeconds: 0 };

/**
 * Times several cases round-robin (A B C A B C ...) after a warm-up of each, so slow drift in
 * the machine's speed affects every case alike and ratios between them stay fair.
 * Returns the run times in ms per case, in the order given.
 */
export async function timeRoundRobin(cases: readonly (() => Promise<unknown>)[], policy: RepeatPolicy): Promise<number[][]> {
  for (const run of cases) for (let i = 0; i < policy.warmup; i++) await run();
  const times = cases.map(() => [] as number[]);
  let spent = 0;
  for (let rep = 0; rep < policy.maxReps; rep++) {
    if (rep >= policy.minReps && spent / cases.length >= policy.minSeconds * 1000) break;
    for (const [i, run] of cases.entries()) {
      const t0 = performance.now();
      await run();
      const ms = performance.now() - t0;
      times[i].push(ms);
      spent += ms;
    }
  }
  return times;
}

export const fmt = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "n/a");
