/** Seconds and requests of each phase of fusion_request_phase_seconds, in the order the server exposes them. */
export type PhaseTotals = ReadonlyMap<string, { readonly seconds: number; readonly requests: number }>;

const SAMPLE = /^fusion_request_phase_seconds_(sum|count)\{phase="([^"]+)"\} (\S+)$/;

/** What the server's /metrics says so far (cumulative). */
export async function scrapePhases(base: string): Promise<PhaseTotals> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const totals = new Map<string, { seconds: number; requests: number }>();
  for (const line of text.split("\n")) {
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const [, which, phase, value] = m;
    const entry = totals.get(phase) ?? { seconds: 0, requests: 0 };
    totals.set(phase, which === "sum" ? { ...entry, seconds: Number(value) } : { ...entry, requests: Number(value) });
  }
  return totals;
}

/** The requests answered between two scrapes, added to `earlier` (other blocks of the same case) if given. */
export function phaseDelta(before: PhaseTotals, after: PhaseTotals, earlier: PhaseTotals = new Map()): PhaseTotals {
  return new Map(
    [...after].map(([phase, { seconds, requests }]) => {
      const was = before.get(phase) ?? { seconds: 0, requests: 0 };
      const more = earlier.get(phase) ?? { seconds: 0, requests: 0 };
      return [phase, { seconds: seconds - was.seconds + more.seconds, requests: requests - was.requests + more.requests }];
    }),
  );
}

/** Each phase's mean per request, e.g. "parse 0.05 ms, ..., pass 8.9 ms, ...", and their sum in ms. */
export function phaseMeans(totals: PhaseTotals, digits = 2): { readonly line: string; readonly sumMs: number; readonly requests: number } {
  const means = [...totals].map(([phase, { seconds, requests }]) => [phase, requests > 0 ? (seconds / requests) * 1000 : NaN] as const);
  return {
    line: means.map(([phase, ms]) => `${phase} ${ms.toFixed(digits)} ms`).join(", "),
    sumMs: means.reduce((sum, [, ms]) => sum + ms, 0),
    requests: Math.max(0, ...[...totals.values()].map((t) => t.requests)),
  };
}
