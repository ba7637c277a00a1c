/** The server's pass counters in /metrics, cumulative, and what a block of load added to them. */
const COUNTERS = /^(fusion_pass_inputs_(?:sum|count)|fusion_pass_routes_(?:sum|count)|fusion_pass_tokens_total\{kind="(?:real|computed)"\}|fusion_route_assembly_seconds_(?:sum|count)) (\S+)$/;

export async function scrapeCounters(base: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = COUNTERS.exec(line);
    if (m) values.set(m[1], Number(m[2]));
  }
  return values;
}

export const counterDiff = (before: Map<string, number>, after: Map<string, number>) =>
  new Map([...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)]));
