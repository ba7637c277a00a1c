/**
 * Which waiting inputs make the next forward pass. Pure: the scheduler calls it with its queue in
 * arrival order, and the tests call it directly.
 *
 * - `mixed` (default): the oldest input anchors the pass, so no input and no route waits behind
 *   younger ones. Around it, the pass takes the waiting inputs closest to it in length, of any
 *   route, up to `slots` routes: many routes share one pass instead of queueing behind each
 *   other's. Of those, it takes as many as make the pass most efficient: real tokens per unit of
 *   work, the work being the padded tokens plus a fixed cost per pass (`passOverheadTokens`).
 *   A longer input that would pad many short ones waits for a pass of its own length, unless the
 *   pass is so small that its fixed cost outweighs the padding.
 * - `route-fifo`: the oldest input's route alone, in arrival order, as far as the first input
 *   that does not fit: the scheduling of single-route passes, kept for comparison.
 */
export type SchedulingPolicy = "mixed" | "route-fifo";
export const SCHEDULING_POLICIES: readonly SchedulingPolicy[] = ["mixed", "route-fifo"];

export interface Waiting<R> {
  /** The route snapshot the input was admitted with: inputs of one snapshot share a slot. */
  readonly route: R;
  readonly length: number;
}

export interface PlanLimits {
  readonly maxBatchSize: number;
  /** Inputs × longest input. */
  readonly maxBatchTokens: number;
  /** Distinct route snapshots in one pass. */
  readonly slots: number;
  /** The fixed cost of a forward pass, in tokens' worth of work (mixed only). */
  readonly passOverheadTokens: number;
}

export interface Plan {
  /** Indices into the queue, in the order the pass takes them. */
  readonly picked: number[];
  /** Whether some waiting input could not join: the pass is as full as it gets. */
  readonly full: boolean;
}

export function planPass<R>(queue: readonly Waiting<R>[], limits: PlanLimits, policy: SchedulingPolicy): Plan {
  return policy === "mixed" ? planMixed(queue, limits) : planRouteFifo(queue, limits);
}

function fits(count: number, width: number, limits: PlanLimits): boolean {
  // The first input always runs, so even one over the budget cannot block the queue.
  return count === 0 || (count < limits.maxBatchSize && (count + 1) * width <= limits.maxBatchTokens);
}

function planRouteFifo<R>(queue: readonly Waiting<R>[], limits: PlanLimits): Plan {
  const picked: number[] = [];
  if (queue.length === 0) return { picked, full: false };
  const route = queue[0].route;
  let longest = 0;
  for (let i = 0; i < queue.length; i++) {
    if (queue[i].route !== route) continue;
    const width = Math.max(longest, queue[i].length);
    if (!fits(picked.length, width, limits)) return { picked, full: true };
    longest = width;
    picked.push(i);
  }
  return { picked, full: false };
}

function planMixed<R>(queue: readonly Waiting<R>[], limits: PlanLimits): Plan {
  if (queue.length === 0) return { picked: [], full: false };
  const anchor = queue[0];
  // Every other input by its distance in length from the anchor; ties to the older input.
  const order = queue
    .map((input, index) => ({ index, distance: Math.abs(input.length - anchor.length) }))
    .slice(1)
    .sort((a, b) => a.distance - b.distance || a.index - b.index);
  const picked = [0];
  const routes = new Set<R>([anchor.route]);
  let longest = anchor.length;
  let real = anchor.length;
  let best = { count: 1, efficiency: real / (limits.passOverheadTokens + longest) };
  let skipped = false;
  for (const { index } of order) {
    if (picked.length >= limits.maxBatchSize) break;
    const input = queue[index];
    const width = Math.max(longest, input.length);
    const newRoute = !routes.has(input.route);
    if (!fits(picked.length, width, limits) || (newRoute && routes.size >= limits.slots)) {
      skipped = true;
      continue;
    }
    if (newRoute) routes.add(input.route);
    longest = width;
    real += input.length;
    picked.push(index);
    const efficiency = real / (limits.passOverheadTokens + picked.length * longest);
    if (efficiency >= best.efficiency) best = { count: picked.length, efficiency };
  }
  return { picked: picked.slice(0, best.count), full: skipped || best.count < queue.length };
}
