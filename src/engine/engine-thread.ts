import { once } from "node:events";
import type { Worker } from "node:worker_threads";
import { UnavailableError } from "../errors.js";
import type { BackboneConfig } from "./backbone.js";
import type { TokenBatch } from "./packing.js";
import type { Int8Mode } from "./int8-mode.js";
import { directFeedBytes, feedBuffers, feedBytes } from "./layout.js";
import { inSharedMemory } from "./shared-memory.js";
import type { InputReadout } from "./readout.js";
import type { ServedRoute } from "./weights.js";
import { startWorker } from "./thread/start.js";
import { fromWire, type EngineWorkerSetup, type FromEngine, type FromLayout, type LayoutWorkerSetup, type ToEngine, type ToLayout } from "./thread/protocol.js";

/** Which route layouts stay resident in the engine (docs/design.md §2, "Resident routes"). */
export interface ResidencyOptions {
  /** Most route layouts held at once, pinned ones included. */
  readonly maxRoutes: number;
  /** Most bytes of route layouts held at once. */
  readonly maxBytes: number;
  /** Routes laid out as soon as the library serves them, and never evicted. */
  readonly pinned: ReadonlySet<string>;
}

export interface EngineThreadOptions extends EngineWorkerSetup {
  /** Absent: every layout stays resident once built, none pinned. */
  readonly residency?: ResidencyOptions;
  /**
   * On a SharedArrayBuffer: while hold[0] is 0, the layout thread stops at the start of each
   * assembly, after setting hold[1] to 1. Lets a test watch the server in the middle of a swap.
   */
  readonly layoutHold?: Int32Array;
}

/** One route's consecutive inputs of a pass. */
export interface PassSlot<Route extends ServedRoute = ServedRoute> {
  readonly route: Route;
  readonly inputs: number;
  readonly explain: boolean;
}

export interface PassOutcome {
  /** One per input of the batch, in order. */
  readonly outputs: InputReadout[];
  /** Forward pass and heads, as the engine thread measured them. */
  readonly seconds: number;
}

/** Where the engine reports route layouts coming and going; the metrics plugin is one. */
export interface AssemblyObserver {
  /** A route's layout was built and installed: `cause` says why it was needed. */
  routeAssembled(route: string, seconds: number, cause: LayoutCause): void;
  /** A resident layout was dropped to stay within the budget (not a replaced route's release). */
  routeEvicted(route: string): void;
  /** A pass served `folded` routes from their layouts and `direct` routes from their modules unfolded. */
  passSlots(folded: number, direct: number): void;
}

/**
 * Why a layout is built: traffic on a route that is not resident (and earns its place: see
 * `considerLayout`), a pinned route, a resident route replaced by a change.
 */
export type LayoutCause = "request" | "pinned" | "replacement";

/** How a pass serves a route: from its folded layout, or from its modules unfolded (a direct slot). */
export type RouteForm = "folded" | "direct";

interface RouteEntry {
  /** The engine's id of the installed layout; undefined while not resident. */
  id: number | undefined;
  /** The engine's id of the route's direct feeds, installed while requests hold a route that is not resident. */
  directId: number | undefined;
  directBytes: number;
  bytes: number;
  /** Requests admitted on this route that are not settled yet. */
  users: number;
  /** The library no longer serves this snapshot. */
  retired: boolean;
  readonly pinned: boolean;
  loading: Promise<void> | undefined;
  /** Requests admitted on it, decayed by half every `heatHalfLife` admissions of all routes, as of admission `heatAt`. */
  heat: number;
  heatAt: number;
}

/**
 * A layout replaces the least used one only for a route admitted this many times as often lately:
 * under traffic spread evenly over more routes than the budget holds, routes would otherwise keep
 * replacing each other, each fold costing about a pass, for nothing.
 */
const ADMISSION_FACTOR = 2;

/**
 * Admissions of all routes over which a route's heat halves, per route of the budget: long enough
 * that routes used equally have heats within ADMISSION_FACTOR of each other, short enough that a
 * route which becomes hot is laid out after a few hundred admissions.
 */
const HEAT_HALF_LIFE_PER_ROUTE = 64;

/**
 * Unfolded feeds kept once no request holds their route, per direct slot, most recently used
 * first, and within a quarter of the layouts' byte budget: building them is a copy of the route's
 * adapters, cheap but, for a route asked for now and then, done on nearly every request otherwise.
 */
const DIRECT_KEPT_PER_SLOT = 2;

/** Route layouts resident in the engine, and their bytes. */
export interface Residency {
  readonly routes: number;
  readonly bytes: number;
  /** Bytes of the direct feeds installed: those of routes requests hold, and those kept. */
  readonly directBytes: number;
}

/**
 * The main thread's handle on the engine (docs/design.md, "Threads"). The forward passes run in
 * a worker that owns the one ONNX Runtime session, and route assembly in a second worker, so the
 * event loop only posts messages: intake, health checks, metrics and the admin API answer while
 * a pass or an assembly runs.
 *
 * Route layouts are resident lazily and within a budget (docs/design.md §2, "Resident routes"):
 * every route the library serves is known to the engine (`register`), and a pass serves a route
 * whose layout is not resident from its modules unfolded, in a direct slot, so no request ever
 * waits for a layout. Layouts are built in the background, at the layout thread's low priority:
 * for pinned routes (before the library publishes them), for resident routes a change replaces,
 * and for routes traffic asks for while there is room in the budget or that are admitted much
 * more often than the least used layout. Past the budget the least used layouts no request holds
 * are evicted; a request holds its route from `acquire` to `release`, and a
 * route the library replaced (`retire`) is released once no request holds it, so a request always
 * finishes on the version it started on.
 */
export class EngineThread {
  private readonly routes = new WeakMap<ServedRoute, RouteEntry>();
  /** Resident layouts. */
  private readonly resident = new Map<ServedRoute, RouteEntry>();
  private residentBytes = 0;
  /** Direct feeds no request holds, least recently used first (DIRECT_KEPT_PER_SLOT). */
  private readonly directKept = new Set<RouteEntry>();
  /** Bytes of every direct feed installed, held or kept. */
  private directBytes = 0;
  private readonly passes = new Map<number, { resolve: (o: PassOutcome) => void; reject: (e: Error) => void }>();
  private readonly jobs = new Map<number, { resolve: (m: FromLayout) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  /** Admissions of all routes so far: the clock of every route's heat. */
  private admissions = 0;
  /** A layout that traffic asked for is being built: one at a time. */
  private folding = false;
  private broken: Error | undefined;
  /** Per layout thread: the last layout handed to it or waiting for its turn, and whether it has exited. */
  private readonly layoutQueues: Map<Worker, { tail: Promise<unknown>; exited: boolean }>;
  private readonly failureListeners: ((err: Error) => void)[] = [];

  private constructor(
    private readonly engine: Worker,
    /** Layout threads (priority.ts, LAYOUT_NICE): one for the layouts traffic asks for, one for changes'. */
    private readonly layouts: Readonly<Record<"traffic" | "changes", Worker>>,
    readonly backbone: BackboneConfig,
    /** The int8 weight range the engine chose at start; absent for float32. */
    readonly int8: Int8Mode | undefined,
    readonly slots: number,
    readonly directSlots: number,
    /** Bytes of the backbone's graph, which the engine's session holds. */
    readonly backboneBytes: number,
    private readonly residency: ResidencyOptions,
    private readonly observer: AssemblyObserver | undefined,
  ) {
    engine.on("message", (message: FromEngine) => this.onEngineMessage(message));
    this.layoutQueues = new Map(Object.values(layouts).map((worker) => [worker, { tail: Promise.resolve(), exited: false }]));
    for (const [worker, queue] of this.layoutQueues) {
      worker.on("message", (message: FromLayout) => this.jobs.get(message.job)?.resolve(message));
      worker.once("exit", () => (queue.exited = true));
    }
    for (const worker of [engine, ...Object.values(layouts)]) {
      worker.on("error", (err) => this.fail(err));
      worker.on("exit", (code) => this.fail(new Error(`an engine thread exited (code ${code})`)));
    }
  }

  static async start(options: EngineThreadOptions, observer?: AssemblyObserver): Promise<EngineThread> {
    const { layoutHold, residency, ...setup } = options;
    const engine = startWorker(new URL("./thread/engine-worker.js", import.meta.url), setup);
    const first = await new Promise<FromEngine>((resolve, reject) => {
      engine.once("message", resolve);
      engine.once("error", reject);
      engine.once("exit", (code) => reject(new Error(`the engine thread exited (code ${code}) before it was ready`)));
    });
    if (first.type !== "ready") {
      await engine.terminate();
      throw first.type === "failed" ? fromWire(first.error) : new Error(`unexpected first message from the engine: ${first.type}`);
    }
    const layout = (role: LayoutWorkerSetup["role"]) =>
      startWorker(new URL("./thread/layout-worker.js", import.meta.url), { role, backbone: first.backbone, int8: first.int8, threads: setup.threads, hold: layoutHold } satisfies LayoutWorkerSetup);
    const layouts = { traffic: layout("traffic"), changes: layout("changes") };
    const unbounded: ResidencyOptions = { maxRoutes: Infinity, maxBytes: Infinity, pinned: new Set() };
    return new EngineThread(engine, layouts, first.backbone, first.int8, options.slots, options.directSlots, first.backboneBytes, residency ?? unbounded, observer);
  }

  /**
   * Makes the routes known to the engine before the library publishes them. Pinned routes are laid
   * out now: resolves once they are installed, and keeps none of the routes if one of them fails.
   * Routes that replace a resident route of the same name are laid out in the background; until
   * then passes serve them unfolded.
   */
  async register(routes: readonly ServedRoute[]): Promise<void> {
    const warm = new Set([...this.resident.keys()].map((route) => route.name));
    const now: Promise<void>[] = [];
    for (const route of routes) {
      const entry = this.entry(route, false);
      if (entry.pinned) now.push(this.load(route, entry, "pinned"));
      else if (warm.has(route.name)) this.loadInBackground(route, entry, "replacement");
    }
    const failed = (await Promise.allSettled(now)).find((o): o is PromiseRejectedResult => o.status === "rejected");
    if (!failed) return;
    this.retire(routes);
    throw failed.reason;
  }

  /** The library no longer serves these routes; each is released once no request uses it. */
  retire(routes: readonly ServedRoute[]): void {
    for (const route of routes) {
      const entry = this.routes.get(route);
      if (!entry) continue;
      entry.retired = true;
      this.releaseIfUnused(route, entry);
    }
  }

  /** A request admitted on `route` holds it until `release`: neither its layout nor its direct feeds leave meanwhile. */
  acquire(route: ServedRoute): void {
    // A snapshot the library never announced is served for its requests and then let go.
    const entry = this.entry(route, true);
    entry.users++;
    entry.heat = this.heatOf(entry) + 1;
    entry.heatAt = ++this.admissions;
    this.directKept.delete(entry);
    if (entry.id === undefined) this.considerLayout(route, entry);
  }

  /** How the next pass would serve an acquired route: the form the scheduler plans its slot by. */
  formOf(route: ServedRoute): RouteForm {
    return this.routes.get(route)?.id !== undefined ? "folded" : "direct";
  }

  release(route: ServedRoute): void {
    const entry = this.routes.get(route);
    if (!entry) return;
    if (--entry.users === 0) this.keepOrDropDirect(entry);
    this.releaseIfUnused(route, entry);
    this.keepWithinBudget();
  }

  /** Route layouts resident now. */
  get residencyNow(): Residency {
    return { routes: this.resident.size, bytes: this.residentBytes, directBytes: this.directBytes };
  }

  /**
   * One forward pass over inputs of acquired routes, inputs ordered by slot: at most `slots` of
   * them resident (formOf) and `directSlots` not.
   */
  run(batch: TokenBatch, slots: readonly PassSlot[]): Promise<PassOutcome> {
    if (this.broken) return Promise.reject(this.unavailable());
    const pass = this.nextId++;
    const wireSlots = slots.map(({ route, inputs, explain }) => {
      const entry = this.routes.get(route)!;
      return { route: entry.id ?? this.directFeedsOf(route, entry), inputs, explain };
    });
    const direct = slots.filter(({ route }) => this.routes.get(route)!.id === undefined).length;
    this.observer?.passSlots(slots.length - direct, direct);
    const message: ToEngine = {
      type: "run",
      pass,
      batch: { seqLen: batch.seqLen, ids: batch.ids, mask: batch.mask, lengths: batch.lengths, segments: batch.segments },
      slots: wireSlots,
    };
    return new Promise<PassOutcome>((resolve, reject) => {
      this.passes.set(pass, { resolve, reject });
      this.engine.postMessage(message, [batch.ids.buffer as ArrayBuffer, batch.mask.buffer as ArrayBuffer]);
    });
  }

  /** Called once if a thread of the engine stops unexpectedly (not after `close`). */
  onFailure(listener: (err: Error) => void): void {
    this.failureListeners.push(listener);
  }

  /**
   * Anything still pending is refused (the server closes the engine once every request is
   * answered); a layout being built is finished first, since the layout thread cannot be stopped
   * inside ONNX Runtime.
   */
  async close(): Promise<void> {
    this.failureListeners.length = 0;
    this.fail(new Error("the engine was closed"));
    const layoutsDone = [...this.layoutQueues].filter(([, queue]) => !queue.exited).map(([worker]) => {
      const done = once(worker, "exit");
      worker.postMessage({ type: "close" } satisfies ToLayout);
      return done;
    });
    await Promise.all([this.engine.terminate(), ...layoutsDone]);
  }

  private entry(route: ServedRoute, retired: boolean): RouteEntry {
    let entry = this.routes.get(route);
    if (!entry) {
      entry = { id: undefined, directId: undefined, directBytes: 0, bytes: 0, users: 0, retired, pinned: this.residency.pinned.has(route.name), loading: undefined, heat: 0, heatAt: 0 };
      this.routes.set(route, entry);
    }
    return entry;
  }

  private heatOf(entry: RouteEntry): number {
    const halfLife = HEAT_HALF_LIFE_PER_ROUTE * this.residency.maxRoutes;
    return entry.heat * 2 ** (-(this.admissions - entry.heatAt) / halfLife);
  }

  /**
   * Lays out a route traffic asks for when the budget has room, or when it is admitted
   * ADMISSION_FACTOR times as often lately as the least used layout, which it replaces; one at a time.
   */
  private considerLayout(route: ServedRoute, entry: RouteEntry): void {
    if (entry.loading || entry.retired || this.folding) return;
    const { maxRoutes, maxBytes } = this.residency;
    if (this.resident.size >= maxRoutes || this.residentBytes >= maxBytes) {
      const victim = this.leastUsed();
      if (!victim || this.heatOf(entry) <= ADMISSION_FACTOR * this.heatOf(victim[1])) return;
    }
    this.folding = true;
    this.loadInBackground(route, entry, "request").finally(() => (this.folding = false));
  }

  /** Passes serve the route unfolded until the layout is installed; if it fails, they go on doing so. */
  private loadInBackground(route: ServedRoute, entry: RouteEntry, cause: LayoutCause): Promise<void> {
    return this.load(route, entry, cause).catch(() => undefined);
  }

  /** The id of the route's direct feeds, installed in the engine thread before the first pass that names it. */
  private directFeedsOf(route: ServedRoute, entry: RouteEntry): number {
    if (entry.directId === undefined) {
      entry.directId = this.nextId++;
      entry.directBytes = directFeedBytes(this.backbone, route);
      this.directBytes += entry.directBytes;
      const modules = { adapters: route.adapters.map(inSharedMemory), fusion: route.fusion && inSharedMemory(route.fusion) };
      this.engine.postMessage({ type: "install_direct", route: entry.directId, modules, head: inSharedMemory(route.head) } satisfies ToEngine);
    }
    return entry.directId;
  }

  private dropDirect(entry: RouteEntry): void {
    this.directKept.delete(entry);
    if (entry.directId === undefined) return;
    if (!this.broken) this.engine.postMessage({ type: "release", route: entry.directId } satisfies ToEngine);
    entry.directId = undefined;
    this.directBytes -= entry.directBytes;
    entry.directBytes = 0;
  }

  /** A route no request holds keeps its direct feeds while it has no layout and they fit DIRECT_KEPT_PER_SLOT. */
  private keepOrDropDirect(entry: RouteEntry): void {
    if (entry.directId === undefined) return;
    if (entry.id !== undefined || entry.retired) return this.dropDirect(entry);
    this.directKept.add(entry);
    const keptBytes = () => [...this.directKept].reduce((sum, e) => sum + e.directBytes, 0);
    while (this.directKept.size > DIRECT_KEPT_PER_SLOT * this.directSlots || (this.directKept.size > 0 && keptBytes() > this.residency.maxBytes / 4)) {
      this.dropDirect(this.directKept.values().next().value!);
    }
  }

  /** Lays the route out and installs it, once however many ask at the same time. */
  private load(route: ServedRoute, entry: RouteEntry, cause: LayoutCause): Promise<void> {
    if (entry.id !== undefined) return Promise.resolve();
    entry.loading ??= this.install(route, entry, cause).finally(() => (entry.loading = undefined));
    return entry.loading;
  }

  /**
   * Layouts go to their layout thread (traffic's, or changes' for pinned and replaced routes) one
   * at a time, each when the one before is done, so that a route retired while it waited (replaced
   * again by a later change) is skipped, not folded for nothing: back-to-back swaps under load
   * would otherwise queue folds faster than they finish.
   */
  private install(route: ServedRoute, entry: RouteEntry, cause: LayoutCause): Promise<void> {
    const worker = cause === "request" ? this.layouts.traffic : this.layouts.changes;
    const queue = this.layoutQueues.get(worker)!;
    const turn = queue.tail.then(() => (entry.retired ? undefined : this.build(worker, route, entry, cause)));
    queue.tail = turn.catch(() => undefined);
    return turn;
  }

  private async build(worker: Worker, route: ServedRoute, entry: RouteEntry, cause: LayoutCause): Promise<void> {
    if (this.broken) throw this.unavailable();
    const job = this.nextId++;
    const request: ToLayout = { type: "layout", job, adapters: route.adapters.map(inSharedMemory), fusion: route.fusion && inSharedMemory(route.fusion) };
    const reply = await new Promise<FromLayout>((resolve, reject) => {
      this.jobs.set(job, { resolve, reject });
      worker.postMessage(request);
    }).finally(() => this.jobs.delete(job));
    if ("error" in reply) throw fromWire(reply.error);
    if (this.broken) throw this.unavailable();
    this.observer?.routeAssembled(route.name, reply.seconds, cause);
    entry.id = this.nextId++;
    entry.bytes = feedBytes(reply.feeds);
    this.resident.set(route, entry);
    this.residentBytes += entry.bytes;
    const message: ToEngine = { type: "install", route: entry.id, feeds: reply.feeds, head: inSharedMemory(route.head) };
    this.engine.postMessage(message, feedBuffers(reply.feeds));
    if (entry.users === 0) this.dropDirect(entry);
    // Retired while it was laid out, with nobody waiting for it.
    this.releaseIfUnused(route, entry);
    this.keepWithinBudget();
  }

  private releaseIfUnused(route: ServedRoute, entry: RouteEntry): void {
    if (!entry.retired || entry.users > 0) return;
    this.dropDirect(entry);
    this.evict(route, entry);
    this.routes.delete(route);
  }

  /** The resident layout used least lately (lowest heat) that no request holds and is not pinned. */
  private leastUsed(): [ServedRoute, RouteEntry] | undefined {
    let coldest: [ServedRoute, RouteEntry] | undefined;
    for (const [route, entry] of this.resident) {
      if (entry.users > 0 || entry.pinned) continue;
      if (!coldest || this.heatOf(entry) < this.heatOf(coldest[1])) coldest = [route, entry];
    }
    return coldest;
  }

  /** Evicts the least used layouts that no request holds and are not pinned, while over the budget. */
  private keepWithinBudget(): void {
    const { maxRoutes, maxBytes } = this.residency;
    while (this.resident.size > maxRoutes || this.residentBytes > maxBytes) {
      const victim = this.leastUsed();
      if (!victim) return;
      this.evict(...victim);
      this.observer?.routeEvicted(victim[0].name);
    }
  }

  private evict(route: ServedRoute, entry: RouteEntry): void {
    if (entry.id === undefined) return;
    this.resident.delete(route);
    this.residentBytes -= entry.bytes;
    const id = entry.id;
    entry.id = undefined;
    entry.bytes = 0;
    if (!this.broken) this.engine.postMessage({ type: "release", route: id } satisfies ToEngine);
  }

  private onEngineMessage(message: FromEngine): void {
    if (message.type !== "done" && message.type !== "pass_failed") return;
    const pending = this.passes.get(message.pass);
    if (!pending) return;
    this.passes.delete(message.pass);
    if (message.type === "done") pending.resolve({ outputs: message.outputs, seconds: message.seconds });
    else pending.reject(fromWire(message.error));
  }

  private fail(err: Error): void {
    if (this.broken) return;
    this.broken = err;
    for (const { reject } of [...this.passes.values(), ...this.jobs.values()]) reject(this.unavailable());
    this.passes.clear();
    this.jobs.clear();
    for (const listener of this.failureListeners) listener(err);
  }

  private unavailable(): UnavailableError {
    return new UnavailableError("engine_unavailable", `the engine thread stopped: ${this.broken?.message ?? "unknown reason"}`);
  }
}
