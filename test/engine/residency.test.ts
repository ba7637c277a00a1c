import t, { type Test } from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { EngineThread, type AssemblyObserver, type LayoutCause, type ResidencyOptions } from "../../src/engine/engine-thread.js";
import { AdapterLibrary } from "../../src/library/library.js";
import type { FusionRoute } from "../../src/library/route.js";
import { Scheduler } from "../../src/scheduler/scheduler.js";
import { TINY_LIBRARY } from "../server/harness.js";
import { TINY_BACKBONE } from "../fixtures.js";

const backbone = (await loadBackbone(TINY_BACKBONE)).config;
const INPUT = [2, 7, 5, 3];

/** What the engine reported, in order. */
class Events implements AssemblyObserver {
  readonly log: string[] = [];
  routeAssembled(route: string, _seconds: number, cause: LayoutCause): void {
    this.log.push(`layout ${route} (${cause})`);
  }
  routeEvicted(route: string): void {
    this.log.push(`evict ${route}`);
  }
  coldStart(route: string): void {
    this.log.push(`cold start ${route}`);
  }
}

async function serve(t: Test, residency: ResidencyOptions) {
  const events = new Events();
  const engine = await EngineThread.start({ backboneDir: TINY_BACKBONE, device: "cpu", precision: "float32", threads: 1, slots: 2, residency }, events);
  t.teardown(() => engine.close());
  const library = await AdapterLibrary.open(TINY_LIBRARY, backbone, engine);
  const scheduler = new Scheduler(engine, { maxBatchTokens: 256, maxBatchSize: 8, maxWaitMs: 0, maxQueue: 64, requestTimeoutMs: 10_000, scheduling: "mixed" }, { queueWait() {}, pass() {} });
  const predict = async (name: string) => (await scheduler.submit(library.route(name), [INPUT], false))[0].output;
  return { engine, library, events, predict };
}

const budget = (maxRoutes: number, pinned: string[] = []): ResidencyOptions => ({ maxRoutes, maxBytes: Infinity, pinned: new Set(pinned) });

t.test("no route is laid out until a request needs it; a cold route's first request is answered once its layout is built", async (t) => {
  const { engine, events, predict } = await serve(t, budget(4));
  t.equal(engine.residencyNow.routes, 0, "nothing resident after the library opened");
  const first = await predict("dyn5");
  t.same(events.log, ["layout dyn5 (request)", "cold start dyn5"]);
  t.equal(engine.residencyNow.routes, 1);
  t.ok(engine.residencyNow.bytes > 0, `${engine.residencyNow.bytes} bytes resident`);
  t.same(await predict("dyn5"), first, "a second request finds it resident, same answer");
  t.equal(events.log.length, 2, "and builds nothing");
});

t.test("past the budget the least recently used layout goes; one a request holds never does", async (t) => {
  const { engine, library, events, predict } = await serve(t, budget(1));
  const dyn5 = library.route("dyn5");
  const before = await predict("dyn5");
  // A request holds dyn5 (the least recently used) while another route is laid out and answered.
  engine.acquire(dyn5);
  await predict("static2");
  t.same(events.log.filter((e) => e.startsWith("evict")), ["evict static2"], "over the budget, the layout nobody holds leaves, though used last");
  t.same(engine.residencyNow.routes, 1, "dyn5 stays while held");
  engine.release(dyn5);
  t.equal(engine.residencyNow.routes, 1, "released, within the budget: kept warm");
  await predict("a1");
  t.ok(events.log.includes("evict dyn5"), "the next route takes dyn5's place");
  t.same(await predict("dyn5"), before, "laid out again, dyn5 answers as before");
});

t.test("a pinned route is laid out when the library serves it and never evicted", async (t) => {
  const { engine, events, predict } = await serve(t, budget(1, ["static5"]));
  t.same(events.log, ["layout static5 (pinned)"], "laid out before any request");
  for (const name of ["a1", "dyn2", "a2", "dyn5"]) await predict(name);
  t.notOk(events.log.includes("evict static5"), "never evicted");
  t.equal(engine.residencyNow.routes, 1, "a budget of one is full with the pinned route: others leave once answered");
  await predict("static5");
  t.equal(events.log.filter((e) => e === "layout static5 (pinned)" || e.startsWith("layout static5")).length, 1, "never laid out again");
});

t.test("a route the library replaces is laid out before it is published when the old one was resident", async (t) => {
  const { engine, library, events, predict } = await serve(t, budget(4));
  await predict("a1");
  const old: FusionRoute = library.route("a1");
  // The same modules under a new snapshot, as a change of any member would build.
  const replacement: FusionRoute = { ...old, version: `${old.version}-next` };
  await engine.register([replacement]);
  t.same(events.log.slice(-1), ["layout a1 (replacement)"], "laid out in register");
  engine.retire([old]);
  t.equal(engine.residencyNow.routes, 1, "the old layout is released once retired and unused");
  t.equal(engine.whenResident((engine.acquire(replacement), replacement)), null, "the replacement is resident");
  engine.release(replacement);
});
