import t from "tap";
import type { ForwardResult, RouteFeeds, TokenBatch } from "../../src/engine/engine.js";
import type { PredictionHead } from "../../src/engine/heads.js";
import { TimeoutError } from "../../src/errors.js";
import type { FusionRoute } from "../../src/library/route.js";
import { Batcher, type BatcherOptions } from "../../src/server/batcher.js";

const D = 2;
const head: PredictionHead = {
  type: "classification",
  labels: ["only"],
  linears: [{ weight: { shape: [D, 1], data: new Float32Array(D) }, bias: null }],
  activation: "linear",
};
const route = (name: string, version: string) => ({ name, version, head, feeds: {} }) as unknown as FusionRoute;

/** Records every pass; each takes `ms` and can be held until released. */
class FakeEngine {
  readonly passes: { feeds: RouteFeeds; batch: TokenBatch }[] = [];
  constructor(private readonly ms = 1) {}
  async run(batch: TokenBatch, feeds: RouteFeeds): Promise<ForwardResult> {
    this.passes.push({ feeds, batch });
    await new Promise((r) => setTimeout(r, this.ms));
    return { hidden: new Float32Array(batch.batch * batch.seqLen * D) };
  }
}

const options: BatcherOptions = { maxBatchTokens: 64, maxBatchSize: 8, maxWaitMs: 5, maxQueue: 100, requestTimeoutMs: 5_000 };
const noMetrics = { queueWait() {}, batch() {} };
const ids = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

t.test("a pass never mixes two versions of a route", async (t) => {
  const engine = new FakeEngine();
  const batcher = new Batcher(engine, D, options, noMetrics);
  const v1 = route("r", "v1");
  const v2 = route("r", "v2");
  await Promise.all([batcher.submit(v1, [ids(3), ids(3)], false), batcher.submit(v2, [ids(3)], false), batcher.submit(v1, [ids(3)], false)]);
  t.same(engine.passes.map((p) => p.batch.batch), [2, 1, 1], "v1, then v2, then v1 again: in arrival order, never mixed");
});

t.test("a pass stays within the token budget and the batch size", async (t) => {
  const engine = new FakeEngine();
  const batcher = new Batcher(engine, D, options, noMetrics);
  const r = route("r", "v1");
  const lengths = [10, 20, 20, 5, 5, 5, 5, 5, 5, 5, 5, 5, 30];
  const out = await batcher.submit(r, lengths.map(ids), false);
  t.equal(out.length, lengths.length, "one readout per input");
  for (const { batch } of engine.passes) {
    t.ok(batch.batch * batch.seqLen <= options.maxBatchTokens, `${batch.batch} × ${batch.seqLen} within the budget`);
    t.ok(batch.batch <= options.maxBatchSize);
  }
  t.same(engine.passes.flatMap((p) => p.batch.lengths), lengths, "inputs in order, each exactly once");
});

t.test("the oldest waiting route goes first", async (t) => {
  const engine = new FakeEngine(20);
  const batcher = new Batcher(engine, D, { ...options, maxWaitMs: 0 }, noMetrics);
  const [a, b] = [route("a", "1"), route("b", "1")];
  const first = batcher.submit(a, [ids(2)], false); // runs at once, keeping the engine busy
  await new Promise((r) => setImmediate(r));
  const waiting = [batcher.submit(b, [ids(2)], false), batcher.submit(a, [ids(2)], false)];
  await Promise.all([first, ...waiting]);
  t.same(engine.passes.map((p) => p.batch.lengths.length), [1, 1, 1]);
  t.equal(engine.passes[1].feeds, b.feeds, "b arrived before a's second request");
});

t.test("a full queue refuses, a timed-out request leaves the queue", async (t) => {
  const engine = new FakeEngine(50);
  const batcher = new Batcher(engine, D, { ...options, maxQueue: 3, maxBatchSize: 1, maxWaitMs: 0, requestTimeoutMs: 30 }, noMetrics);
  const r = route("r", "1");
  const running = t.rejects(batcher.submit(r, [ids(2)], false), TimeoutError, "the running one outlived its timeout too");
  await new Promise((res) => setImmediate(res));
  const queued = batcher.submit(r, [ids(2), ids(2), ids(2)], false);
  t.equal(batcher.depth, 3);
  await t.rejects(batcher.submit(r, [ids(2)], false), { status: 429, code: "overloaded", headers: { "retry-after": "1" } });
  await t.rejects(queued, TimeoutError);
  t.equal(batcher.depth, 0, "its inputs were dropped from the queue");
  await running;
  t.equal(engine.passes.length, 1, "no pass ran for the timed-out request");
});
