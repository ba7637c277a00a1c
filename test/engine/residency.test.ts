import t, { type Test } from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { EngineThread, type AssemblyObserver, type LayoutCause, type ResidencyOptions } from "../../src/engine/engine-thread.js";
import { AdapterLibrary } from "../../src/library/library.js";
import type { FusionRoute } from "../../src/library/route.js";
import type { HeadOutput } from "../../src/engine/heads.js";
import { Scheduler } from "../../src/scheduler/scheduler.js";
import { TINY_LIBRARY } from "../server/harness.js";
import { TINY_BACKBONE } from "../fixtures.js";

const backbone = (await loadBackbone(TINY_BACKBONE)).config;
const INPUT = [2, 7, 5, 3];

/** What the engine reported, in order. */
class Events implements AssemblyObserver {
  readonly log: string[] = [];
  /** Per pass: its folded and direct slots. */
  readonly passes: [number, number][] = [];
  routeAssembled(route: string, _seconds: number, cause: LayoutCause): void {
    this.log.push(`layout ${route} (${cause})`);
  }
  routeEvicted(route: string): void {
    this.log.push(`evict ${route}`);
  }
  passSlots(folded: number, direct: number): void {
    this.passes.push([folded, direct]);
  }
}

async function serve(t: Test, residency: ResidencyOptions, layoutHold?: Int32Array) {
  const events = new Events();
  const engine = await EngineThread.start({ backboneDir: TINY_BACKBONE, device: "cpu", precision: "float32", threads: 1, slots: 2, directSlots: 2, residency, layoutHold }, events);
  t.teardown(() => engine.close());
  const library = await AdapterLibrary.open(TINY_LIBRARY, backbone, engine);
  const scheduler = new Scheduler(engine, { maxBatchTokens: 256, maxBatchSize: 8, maxWaitMs: 0, maxQueue: 64, requestTimeoutMs: 10_000, scheduling: "mixed" }, { queueWait() {}, pass() {} });
  const predict = async (name: string) => (await scheduler.submit(library.route(name), [INPUT], false))[0].output as HeadOutput;
  /** Resolves once the route's layout is resident (the layout thread builds it in the background). */
  const resident = async (name: string) => {
    while (engine.formOf(library.route(name)) !== "folded") await new Promise((resolve) => setTimeout(resolve, 5));
  };
  return { engine, library, events, predict, resident };
}

const budget = (maxRoutes: number, pinned: string[] = []): ResidencyOptions => ({ maxRoutes, maxBytes: Infinity, pinned: new Set(pinned) });

const TOLERANCE = 1e-5;
function maxDiff(a: HeadOutput, b: HeadOutput): number {
  return Math.max(...a.logits.map((v, i) => Math.abs(v - b.logits[i])));
}

t.test("no route is laid out until traffic needs it; a route without a layout is answered at once, unfolded, and laid out in the background", async (t) => {
  const { engine, events, predict, resident } = await serve(t, budget(4));
  t.equal(engine.residencyNow.routes, 0, "nothing resident after the library opened");
  const first = await predict("dyn5");
  t.same(events.passes, [[0, 1]], "the first pass served dyn5 in a direct slot");
  await resident("dyn5");
  t.equal(engine.residencyNow.directBytes, 0, "its unfolded feeds go once its layout is resident");
  t.same(events.log, ["layout dyn5 (request)"], "its layout was built after it was asked for");
  t.equal(engine.residencyNow.routes, 1);
  t.ok(engine.residencyNow.bytes > 0, `${engine.residencyNow.bytes} bytes resident`);
  const second = await predict("dyn5");
  t.same(events.passes.at(-1), [1, 0], "the next pass serves it folded");
  t.ok(maxDiff(second, first) <= TOLERANCE, `same answer folded as unfolded: max |diff| ${maxDiff(second, first).toExponential(2)} ≤ ${TOLERANCE}`);
  t.equal(events.log.length, 1, "and nothing more is built");
});

t.test("past the budget a layout replaces the least used one only for a route used far more lately; one a request holds never leaves", async (t) => {
  const { engine, library, events, predict, resident } = await serve(t, budget(1));
  const dyn5 = library.route("dyn5");
  const before = await predict("dyn5");
  await resident("dyn5");
  // A request holds dyn5 while another route is asked for: nothing may take dyn5's place.
  engine.acquire(dyn5);
  for (let i = 0; i < 8; i++) await predict("static2");
  t.same(events.log, ["layout dyn5 (request)"], "static2 is served unfolded; the held layout stays");
  t.ok(engine.residencyNow.directBytes > 0, `static2's unfolded feeds are kept between its requests (${engine.residencyNow.directBytes} bytes)`);
  t.equal(engine.formOf(library.route("static2")), "direct");
  engine.release(dyn5);
  // a1, asked for again and again, earns the place of dyn5, which nobody asks for any more.
  let asked = 0;
  while (engine.formOf(library.route("a1")) !== "folded" && asked < 50) {
    await predict("a1");
    asked++;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  t.ok(events.log.includes("layout a1 (request)") && events.log.includes("evict dyn5"), `a1 replaced dyn5 after ${asked} requests`);
  t.equal(engine.residencyNow.routes, 1, "within the budget");
  const after = await predict("dyn5");
  t.ok(maxDiff(after, before) <= TOLERANCE, "dyn5, unfolded again, answers as before");
});

t.test("under traffic spread evenly over more routes than the budget, layouts do not keep replacing each other", async (t) => {
  const { events, predict } = await serve(t, budget(2));
  const names = ["a1", "a2", "dyn2", "dyn5", "static2", "static5"];
  const rounds = async (count: number) => {
    for (let round = 0; round < count; round++) {
      for (const name of names) await predict(name);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  await rounds(5);
  const warmedUp = events.log.length;
  t.ok(warmedUp >= 2, `the budget filled while the routes' use was being learnt: ${events.log.join(", ")}`);
  await rounds(10);
  t.same(events.log.slice(warmedUp), [], "then 60 more requests, round-robin over 6 routes with room for 2: no layout, no eviction");
});

t.test("a pinned route is laid out when the library serves it and never evicted", async (t) => {
  const { engine, events, predict } = await serve(t, budget(1, ["static5"]));
  t.same(events.log, ["layout static5 (pinned)"], "laid out before any request");
  for (let i = 0; i < 5; i++) for (const name of ["a1", "dyn2", "a2", "dyn5"]) await predict(name);
  t.same(events.log, ["layout static5 (pinned)"], "never evicted; with a budget of one, the other routes are served unfolded");
  t.equal(engine.residencyNow.routes, 1);
  await predict("static5");
  t.same(events.passes.at(-1), [1, 0], "static5 served folded");
});

t.test("a change lays out in the background the routes it replaces that were resident; until then they are served unfolded", async (t) => {
  const { engine, library, events, predict, resident } = await serve(t, budget(4));
  await predict("a1");
  await resident("a1");
  const old: FusionRoute = library.route("a1");
  // The same modules under a new snapshot, as a change of any member would build.
  const replacement: FusionRoute = { ...old, version: `${old.version}-next` };
  await engine.register([replacement]);
  t.equal(engine.formOf(replacement), "direct", "register does not wait for the layout");
  engine.retire([old]);
  while (engine.formOf(replacement) !== "folded") await new Promise((resolve) => setTimeout(resolve, 5));
  t.same(events.log.slice(-1), ["layout a1 (replacement)"], "laid out because the route it replaces was resident");
  t.equal(engine.residencyNow.routes, 1, "the old layout is released once retired and unused");
});

t.test("a layout waiting for its turn is skipped when its route is retired meanwhile", async (t) => {
  const hold = new Int32Array(new SharedArrayBuffer(8));
  Atomics.store(hold, 0, 1);
  const { engine, library, events, predict, resident } = await serve(t, budget(4), hold);
  await predict("a1");
  await resident("a1");
  const old: FusionRoute = library.route("a1");
  const next = (n: number): FusionRoute => ({ ...old, version: `${old.version}-${n}` });
  // The layout thread stops at the start of the next layout: three changes in a row queue three.
  Atomics.store(hold, 0, 0);
  const [first, second, third] = [next(1), next(2), next(3)];
  for (const route of [first, second, third]) await engine.register([route]);
  engine.retire([old, first, second]);
  Atomics.store(hold, 0, 1);
  Atomics.notify(hold, 0);
  while (engine.formOf(third) !== "folded") await new Promise((resolve) => setTimeout(resolve, 5));
  const replacements = events.log.filter((e) => e === "layout a1 (replacement)").length;
  t.equal(replacements, 2, "the first was already with the layout thread; the second was skipped; the third laid out");
  t.equal(engine.residencyNow.routes, 1, "only the live route's layout stays");
});
