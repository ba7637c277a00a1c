/**
 * Bench-only experiment (not the shipped server): src/main.ts with the two batcher changes proposed
 * in bench/README.md, to measure them.
 *
 * 1. Yield after each pass (as serve-yield.ts): requests that arrived while the synchronous forward
 *    pass blocked the event loop are read and queued before the next batch is planned.
 * 2. Length-aware batches: the oldest queued input still goes first (no starvation, same max wait),
 *    but the rest of the batch is filled with the queued inputs closest to it in length instead of
 *    the next ones in arrival order, so far fewer padded tokens are computed.
 *
 *   node --import tsx bench/experiments/serve-length-aware.ts <the server's flags>
 */
import { FusionEngine } from "../../src/engine/engine.js";
import { Batcher } from "../../src/server/batcher.js";

const run = FusionEngine.prototype.run;
FusionEngine.prototype.run = async function (this: FusionEngine, ...args: Parameters<typeof run>) {
  const result = await run.apply(this, args);
  await new Promise((resolve) => setImmediate(resolve));
  return result;
};

interface Queued {
  readonly ids: readonly number[];
  readonly enqueuedAt: number;
}
interface Planner {
  plan(queue: Queued[]): { count: number; full: boolean };
}
const proto = Batcher.prototype as unknown as Planner;
const plan = proto.plan;
proto.plan = function (this: Planner, queue: Queued[]) {
  if (queue.length > 1) {
    let oldest = 0;
    for (let i = 1; i < queue.length; i++) if (queue[i].enqueuedAt < queue[oldest].enqueuedAt) oldest = i;
    const head = queue[oldest];
    const rest = queue
      .filter((_, i) => i !== oldest)
      .sort((a, b) => Math.abs(a.ids.length - head.ids.length) - Math.abs(b.ids.length - head.ids.length) || a.enqueuedAt - b.enqueuedAt);
    queue.splice(0, queue.length, head, ...rest); // dispatch takes the first `count` of this same array
  }
  return plan.call(this, queue);
};

await import("../../src/main.js");
