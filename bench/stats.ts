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
 * Times several cases in blocks: each case in turn gets a short pause, a warm-up and a run of
 * timed repetitions; `rounds` passes over the cases share the repetitions, so slow drift in the
 * machine's speed still reaches every case alike. Blocks rather than strict alternation because
 * an ONNX Runtime session's worker threads keep spinning for a while after a run, and a different
 * session started right then competes with them for the two cores (measured: plain 1×64 at
 * 33 ms when alternated with other sessions, 16 ms in a block).
 * Returns the run times in ms per case, in the order given.
 */
export type Guard = <T>(what: string, measure: () => Promise<T>) => Promise<{ value: T; othersPercent: number }>;

export interface BlockTimes {
  /** Run times in ms per case, in the order given. */
  readonly times: number[][];
  /** Per case, the most CPU (% of a core) other processes used during one of its accepted blocks. */
  readonly othersPercent: number[];
}

export async function timeInBlocks(
  cases: readonly { readonly label: string; readonly run: () => Promise<unknown> }[],
  policy: RepeatPolicy,
  guard: Guard,
  rounds = 2,
): Promise<BlockTimes> {
  const times = cases.map(() => [] as number[]);
  const othersPercent = cases.map(() => 0);
  const share = (n: number) => Math.ceil(n / rounds);
  for (let round = 0; round < rounds; round++) {
    for (const [i, { label, run }] of cases.entries()) {
      const block = async () => {
        await new Promise((r) => setTimeout(r, 20));
        for (let w = 0; w < Math.max(1, policy.warmup); w++) await run();
        const out: number[] = [];
        let spent = 0;
        for (let rep = 0; rep < share(policy.maxReps); rep++) {
          if (rep >= share(policy.minReps) && spent >= (policy.minSeconds * 1000) / rounds) break;
          const t0 = performance.now();
          await run();
          out.push(performance.now() - t0);
          spent += out[out.length - 1];
        }
        return out;
      };
      const { value, othersPercent: pct } = await guard(label, block);
      times[i].push(...value);
      othersPercent[i] = Math.max(othersPercent[i], pct);
    }
  }
  return { times, othersPercent };
}

export const fmt = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "n/a");
