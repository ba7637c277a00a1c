import { performance } from "node:perf_hooks";
import t from "tap";
import type { PassOutcome, PassSlot, RouteForm } from "../../src/engine/engine-thread.js";
import type { TokenBatch } from "../../src/engine/packing.js";
import type { PredictionHead } from "../../src/engine/heads.js";
import { DEFAULT_CONFIG } from "../../src/config.js";
import { TimeoutError } from "../../src/errors.js";
import type { FusionRoute } from "../../src/library/route.js";
import { type AnsweringPass, Scheduler, type SchedulerOptions } from "../../src/scheduler/scheduler.js";

const head: PredictionHead = { type: "classification", labels: ["only"], linears: [], activation: "linear" };
const route = (name: string, version: string) => ({ name, version, head }) as unknown as FusionRoute;

/** Records every pass; each takes `ms`. Answers each row with its own length, so deliveries can be checked. */
class FakeEngine {
  readonly passes: { batch: TokenBatch; slots: readonly PassSlot<FusionRoute>[] }[] = [];
  readonly held = new Map<FusionRoute, number>();
  /** Routes whose layouts are not resident: passes serve them in direct slots. */
  readonly unfolded = new Set<FusionRoute>();
  constructor(
    private readonly ms = 1,
    readonly slots = 4,
    readonly directSlots = 2,
  ) {}
  async run(batch: TokenBatch, slots: readonly PassSlot<FusionRoute>[]): Promise<PassOutcome> {
    this.passes.push({ batch, slots });
    await new Promise((r) => setTimeout(r, this.ms));
    return { outputs: batch.lengths.map((length) => ({ output: { logits: [length], probabilities: [1] } })), seconds: this.ms / 1000 };
  }
  acquire(r: FusionRoute): void {
    this.held.set(r, (this.held.get(r) ?? 0) + 1);
  }
  release(r: FusionRoute): void {
    this.held.set(r, this.held.get(r)! - 1);
  }
  formOf(r: FusionRoute): RouteForm {
    return this.unfolded.has(r) ? "direct" : "folded";
  }
}

/** Like FakeEngine, but each pass ends only when the test says so: the order of events, no clock. */
class GatedEngine {
  readonly passes: { batch: TokenBatch; slots: readonly PassSlot<FusionRoute>[]; end: () => void }[] = [];
  readonly slots = 4;
  readonly directSlots = 2;
  run(batch: TokenBatch, slots: readonly PassSlot<FusionRoute>[]): Promise<PassOutcome> {
    return new Promise((resolve) => {
      const outcome = { outputs: batch.lengths.map((length) => ({ output: { logits: [length], probabilities: [1] } })), seconds: 0 };
      this.passes.push({ batch, slots, end: () => resolve(outcome) });
    });
  }
  acquire(): void {}
  release(): void {}
  formOf(): RouteForm {
    return "folded";
  }
}

const options: SchedulerOptions = { maxBatchTokens: 64, maxBatchSize: 8, maxWaitMs: 5, maxQueue: 100, requestTimeoutMs: 5_000, scheduling: "mixed" };
const noMetrics = { queueWait() {}, pass() {} };
const ids = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
const lengthsOf = (out: { output: unknown }[]) => out.map((o) => (o.output as { logits: number[] }).logits[0]);

t.test("one pass serves several routes, each route's inputs together, and every answer reaches its request", async (t) => {
  const engine = new FakeEngine();
  const scheduler = new Scheduler(engine, options, noMetrics);
  const [a, b] = [route("a", "1"), route("b", "1")];
  const answers = await Promise.all([scheduler.submit(a, [ids(3), ids(4)], false), scheduler.submit(b, [ids(5)], true), scheduler.submit(a, [ids(6)], false)]);
  t.equal(engine.passes.length, 1, "one pass");
  t.same(engine.passes[0].slots.map((s) => [s.route.name, s.inputs, s.explain]), [["a", 3, false], ["b", 1, true]], "a's inputs, then b's");
  t.same(answers.map(lengthsOf), [[3, 4], [5], [6]], "each request got its own inputs' answers, in order");
  t.same([...engine.held.values()], [0, 0], "every route released once its requests settled");
});

t.test("two versions of a route take two slots: a request is answered by the version it started on", async (t) => {
  const engine = new FakeEngine();
  const scheduler = new Scheduler(engine, options, noMetrics);
  const [v1, v2] = [route("r", "v1"), route("r", "v2")];
  await Promise.all([scheduler.submit(v1, [ids(3), ids(3)], false), scheduler.submit(v2, [ids(3)], false), scheduler.submit(v1, [ids(3)], false)]);
  t.same(engine.passes[0].slots.map((s) => [s.route.version, s.inputs]), [["v1", 3], ["v2", 1]]);
});

t.test("a pass stays within the token budget, the batch size and the slots", async (t) => {
  const engine = new FakeEngine(1, 2);
  const scheduler = new Scheduler(engine, options, noMetrics);
  const lengths = [10, 20, 20, 5, 5, 5, 5, 5, 5, 5, 5, 5, 30];
  const out = await Promise.all(lengths.map((n, i) => scheduler.submit(route(`r${i % 3}`, "1"), [ids(n)], false)));
  t.same(out.map(lengthsOf).flat(), lengths, "one answer per input, each its own");
  for (const { batch, slots } of engine.passes) {
    t.ok(batch.rows * batch.seqLen <= options.maxBatchTokens, `${batch.rows} × ${batch.seqLen} within the budget`);
    t.ok(batch.rows <= options.maxBatchSize && slots.length <= 2);
  }
  t.same(engine.passes.flatMap((p) => p.batch.lengths).sort((x, y) => x - y), [...lengths].sort((x, y) => x - y), "each input exactly once");
});

t.test("the oldest waiting input goes first, whatever its route", async (t) => {
  const engine = new FakeEngine(20, 1);
  const scheduler = new Scheduler(engine, { ...options, maxWaitMs: 0 }, noMetrics);
  const [a, b] = [route("a", "1"), route("b", "1")];
  const first = scheduler.submit(a, [ids(2)], false); // runs at once, keeping the engine busy
  await new Promise((r) => setImmediate(r));
  const waiting = [scheduler.submit(b, [ids(2)], false), scheduler.submit(a, [ids(2)], false)];
  await Promise.all([first, ...waiting]);
  t.same(engine.passes.map((p) => p.slots[0].route.name), ["a", "b", "a"], "b arrived before a's second request");
});

t.test("route-fifo keeps one route per pass", async (t) => {
  const engine = new FakeEngine();
  const scheduler = new Scheduler(engine, { ...options, scheduling: "route-fifo" }, noMetrics);
  const [a, b] = [route("a", "1"), route("b", "1")];
  await Promise.all([scheduler.submit(a, [ids(3)], false), scheduler.submit(b, [ids(3)], false), scheduler.submit(a, [ids(3)], false)]);
  t.same(engine.passes.map((p) => p.slots.map((s) => s.route.name)), [["a"], ["b"]]);
});

t.test("a full queue refuses, a timed-out request leaves the queue", async (t) => {
  const engine = new FakeEngine(50);
  const scheduler = new Scheduler(engine, { ...options, maxQueue: 3, maxBatchSize: 4, maxWaitMs: 0, requestTimeoutMs: 30 }, noMetrics);
  const r = route("r", "1");
  const running = t.rejects(scheduler.submit(r, [ids(2)], false), TimeoutError, "the running one outlived its timeout too");
  await new Promise((res) => setImmediate(res));
  const queued = scheduler.submit(r, [ids(2), ids(2), ids(2)], false);
  t.equal(scheduler.depth, 3);
  await t.rejects(scheduler.submit(r, [ids(2)], false), { kind: "overloaded", code: "overloaded", retryAfterSeconds: 1 });
  await t.rejects(queued, TimeoutError);
  t.equal(scheduler.depth, 0, "its inputs were dropped from the queue");
  await running;
  t.equal(engine.passes.length, 1, "no pass ran for the timed-out request");
  t.equal(engine.held.get(r), 0, "the route is released by both");
});

t.test("while a pass runs, a second is handed to the engine only when a full pass is waiting", async (t) => {
  const engine = new FakeEngine(40);
  const scheduler = new Scheduler(engine, { ...options, maxBatchSize: 2, maxWaitMs: 0 }, noMetrics);
  const r = route("r", "1");
  const first = scheduler.submit(r, [ids(3)], false);
  await new Promise((res) => setImmediate(res));
  const few = scheduler.submit(r, [ids(3)], false);
  await new Promise((res) => setImmediate(res));
  t.equal(engine.passes.length, 1, "one input waiting: it waits for the running pass to end, so later ones can join it");
  const many = scheduler.submit(r, [ids(3), ids(3)], false);
  await new Promise((res) => setImmediate(res));
  t.equal(engine.passes.length, 2, "a full pass waiting: handed over at once");
  t.same(engine.passes[1].batch.rows, 2);
  t.equal(scheduler.depth, 1, "never more than one pass ahead");
  await Promise.all([first, few, many]);
  t.equal(engine.passes.length, 3);
  t.equal(engine.held.get(r), 0);
});

t.test("a route whose layout is not resident is served at once, in a direct slot, beside resident routes", async (t) => {
  const engine = new FakeEngine(1, 1, 2);
  const [cold, colder, warm] = [route("cold", "v1"), route("colder", "v1"), route("warm", "v1")];
  engine.unfolded.add(cold).add(colder);
  const scheduler = new Scheduler(engine, { ...options, maxWaitMs: 1 }, noMetrics);
  const answers = await Promise.all([scheduler.submit(cold, [ids(3)], false), scheduler.submit(warm, [ids(2)], false), scheduler.submit(colder, [ids(4)], false)]);
  t.same(answers.map(lengthsOf), [[3], [2], [4]]);
  t.equal(engine.passes.length, 1, "one pass: one folded slot for warm, two direct slots for cold and colder");
  t.same(engine.passes[0].slots.map((s) => s.route.name), ["cold", "warm", "colder"]);
});

t.test("by default, a lone input on an idle engine starts its pass within submit: no timer, no waiting for company", async (t) => {
  const engine = new GatedEngine();
  const scheduler = new Scheduler(engine, DEFAULT_CONFIG, noMetrics);
  const answer = scheduler.submit(route("a", "1"), [ids(3)], false);
  t.equal(engine.passes.length, 1, "the pass was handed to the engine before submit returned");
  t.equal(scheduler.depth, 0);
  engine.passes[0].end();
  t.same(lengthsOf(await answer), [3]);
});

t.test("inputs that arrive while a pass runs share the next pass, which starts when the running one ends", async (t) => {
  const engine = new GatedEngine();
  const scheduler = new Scheduler(engine, DEFAULT_CONFIG, noMetrics);
  const first = scheduler.submit(route("a", "1"), [ids(3)], false);
  const meanwhile = [scheduler.submit(route("a", "1"), [ids(4)], false), scheduler.submit(route("b", "1"), [ids(5), ids(6)], false)];
  await new Promise((r) => setImmediate(r));
  t.equal(engine.passes.length, 1, "the engine is busy: the newcomers wait in the queue");
  t.equal(scheduler.depth, 3);
  engine.passes[0].end();
  t.same(lengthsOf(await first), [3]);
  await new Promise((r) => setImmediate(r));
  t.equal(engine.passes.length, 2, "the next pass started as soon as the first ended");
  t.same(engine.passes[1].batch.lengths, [4, 5, 6], "and took everything that queued meanwhile");
  engine.passes[1].end();
  t.same((await Promise.all(meanwhile)).map(lengthsOf), [[4], [5, 6]]);
});

t.test("--max-wait-ms, opted into, holds a lone input on an idle engine so that later ones share its pass", async (t) => {
  const engine = new GatedEngine();
  const scheduler = new Scheduler(engine, { ...DEFAULT_CONFIG, maxWaitMs: 30 }, noMetrics);
  const answers = [scheduler.submit(route("a", "1"), [ids(3)], false)];
  t.equal(engine.passes.length, 0, "no pass yet: the input waits for company");
  answers.push(scheduler.submit(route("a", "1"), [ids(4)], false));
  while (engine.passes.length === 0) await new Promise((r) => setTimeout(r, 5));
  t.same(engine.passes[0].batch.lengths, [3, 4], "one pass for both");
  engine.passes[0].end();
  t.same((await Promise.all(answers)).map(lengthsOf), [[3], [4]]);
});

t.test("onAnswer hears once, before the answer, of the pass that delivered a request's last input", async (t) => {
  const engine = new FakeEngine(2);
  const scheduler = new Scheduler(engine, { ...options, maxBatchSize: 2, maxWaitMs: 0 }, noMetrics);
  const heard: AnsweringPass[] = [];
  const answer = scheduler.submit(route("a", "1"), [ids(3), ids(4), ids(5)], false, (pass) => heard.push(pass));
  // The first pass was handed over within submit(); the last input can only run in a later one.
  const firstHandedOver = performance.now();
  const lengths = lengthsOf(await answer);
  t.same(lengths, [3, 4, 5]);
  t.equal(engine.passes.length, 2, "two inputs to a pass");
  t.equal(heard.length, 1, "heard once");
  t.ok(heard[0].started > firstHandedOver, "of the second pass");
  t.equal(heard[0].seconds, 0.002, "with the engine's own time for it");
});
