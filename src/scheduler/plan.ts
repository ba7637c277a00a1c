import { placeInRows } from "../engine/packing.js";

/**
 * Which waiting inputs make the next forward pass. Pure: the scheduler calls it with its queue in
 * arrival order, and the tests call it directly.
 *
 * - `mixed` (default): inputs in arrival order, of any route, up to `slots` routes served from their
 *   layouts and `directSlots` served unfolded (`folded` says which a route is), packed several
 *   to a row (packing.ts), routes mixed in a row, within the token budget. The oldest input always runs, so no input and no
 *   route waits behind younger ones; an input that does not fit (its route would need one more slot,
 *   or the packed pass would exceed the budget) waits for the next pass while younger ones that fit
 *   go ahead. Packing makes the lengths that share a pass matter little: a pass computes little
 *   padding whatever the mix.
 * - `route-fifo`: the oldest input's route alone, in arrival order, one input per row, as far as
 *   the first input that does not fit: the scheduling of single-route padded passes, kept for
 *   comparison.
 */
export type SchedulingPolicy = "mixed" | "route-fifo";
export const SCHEDULING_POLICIES: readonly SchedulingPolicy[] = ["mixed", "route-fifo"];

export interface Waiting<R> {
  /** The route snapshot the input was admitted with: inputs of one snapshot share a slot. */
  readonly route: R;
  readonly length: number;
}

export interface PlanLimits {
  /** Inputs in one pass. */
  readonly maxBatchSize: number;
  /** Rows × longest input: the tokens the pass computes, padding included. */
  readonly maxBatchTokens: number;
  /** Distinct route snapshots in one pass served from their resident layouts. */
  readonly slots: number;
  /** Distinct route snapshots in one pass served from their modules unfolded. */
  readonly directSlots: number;
}

export interface Plan {
  /** Indices into the queue, in the order the pass takes them. */
  readonly picked: number[];
  /** Whether the pass is as full as it gets: a limit stopped it, and waiting would add nothing. */
  readonly full: boolean;
  /** Whether the pass packs several inputs to a row. */
  readonly packed: boolean;
}

/** `folded(route)`: whether a pass would serve the route from its resident layout (else unfolded, in a direct slot). */
export function planPass<R>(queue: readonly Waiting<R>[], limits: PlanLimits, policy: SchedulingPolicy, folded: (route: R) => boolean = () => true): Plan {
  return policy === "mixed" ? planMixed(queue, limits, folded) : planRouteFifo(queue, limits);
}

function planRouteFifo<R>(queue: readonly Waiting<R>[], limits: PlanLimits): Plan {
  const picked: number[] = [];
  if (queue.length === 0) return { picked, full: false, packed: false };
  const route = queue[0].route;
  let longest = 0;
  for (let i = 0; i < queue.length; i++) {
    if (queue[i].route !== route) continue;
    const width = Math.max(longest, queue[i].length);
    // The first input always runs, so even one over the budget cannot block the queue.
    const fits = picked.length === 0 || (picked.length < limits.maxBatchSize && (picked.length + 1) * width <= limits.maxBatchTokens);
    if (!fits) return { picked, full: true, packed: false };
    longest = width;
    picked.push(i);
  }
  return { picked, full: false, packed: false };
}

/** How far past the oldest input mixed planning looks, in passes' worth of inputs: bounded work per plan under a deep queue. */
const LOOKAHEAD_PASSES = 4;

function planMixed<R>(queue: readonly Waiting<R>[], limits: PlanLimits, folded: (route: R) => boolean): Plan {
  const picked: number[] = [];
  const lengths: number[] = [];
  const routes = new Set<R>();
  let direct = 0;
  let longest = 0;
  let skipped = false;
  const scan = Math.min(queue.length, LOOKAHEAD_PASSES * limits.maxBatchSize);
  for (let i = 0; i < scan && picked.length < limits.maxBatchSize; i++) {
    const { route, length } = queue[i];
    const width = Math.max(longest, length);
    const known = routes.has(route);
    const isFolded = known || folded(route);
    const slotFree = known || (isFolded ? routes.size - direct < limits.slots : direct < limits.directSlots);
    const fits = slotFree && (picked.length === 0 || placeInRows([...lengths, length], width).rows * width <= limits.maxBatchTokens);
    if (!fits) {
      skipped = true;
      continue;
    }
    if (!known) {
      if (!isFolded) direct++;
      routes.add(route);
    }
    lengths.push(length);
    longest = width;
    picked.push(i);
  }
  return { picked, full: skipped || picked.length === limits.maxBatchSize, packed: true };
}
