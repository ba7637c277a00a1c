import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { UnavailableError } from "../errors.js";
import type { FusionRoute } from "../library/route.js";
import type { BackboneConfig } from "./backbone.js";
import type { TokenBatch } from "./engine.js";
import type { Int8Mode } from "./int8-mode.js";
import { feedBuffers } from "./layout.js";
import type { InputReadout } from "./readout.js";
import { fromWire, type EngineWorkerSetup, type FromEngine, type FromLayout, type LayoutWorkerSetup, type ToEngine, type ToLayout } from "./thread/protocol.js";

export interface EngineThreadOptions extends EngineWorkerSetup {
  /**
   * On a SharedArrayBuffer: while hold[0] is 0, the layout thread stops at the start of each
   * assembly, after setting hold[1] to 1. Lets a test watch the server in the middle of a swap.
   */
  readonly layoutHold?: Int32Array;
}

/** One route's consecutive inputs of a pass. */
export interface PassSlot {
  readonly route: FusionRoute;
  readonly inputs: number;
  readonly explain: boolean;
}

export interface PassOutcome {
  /** One per input of the batch, in order. */
  readonly outputs: InputReadout[];
  /** Forward pass and heads, as the engine thread measured them. */
  readonly seconds: number;
}

/** Where the engine reports route assembly; the metrics plugin is one. */
export interface AssemblyObserver {
  routeAssembled(route: string, seconds: number): void;
}

interface Installed {
  readonly id: number;
  /** Requests admitted on this route that are not settled yet. */
  users: number;
  retired: boolean;
}

/**
 * The main thread's handle on the engine (docs/design.md, "Threads"). The forward passes run in
 * a worker that owns the one ONNX Runtime session, and route assembly in a second worker, so the
 * event loop only posts messages: intake, health checks, metrics and the admin API answer while
 * a pass or an assembly runs.
 *
 * A route is installed in the engine before the library publishes it (`prepare`) and released
 * once the library has replaced it (`retire`) and no admitted request still uses it
 * (`acquire`/`release`), so a request always finishes on the version it started on.
 */
export class EngineThread {
  private readonly installed = new WeakMap<FusionRoute, Installed>();
  private readonly passes = new Map<number, { resolve: (o: PassOutcome) => void; reject: (e: Error) => void }>();
  private readonly jobs = new Map<number, { resolve: (m: FromLayout) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private broken: Error | undefined;
  private readonly failureListeners: ((err: Error) => void)[] = [];

  private constructor(
    private readonly engine: Worker,
    private readonly layout: Worker,
    readonly backbone: BackboneConfig,
    /** The int8 weight range the engine chose at start; absent for float32. */
    readonly int8: Int8Mode | undefined,
    readonly slots: number,
    private readonly observer: AssemblyObserver | undefined,
  ) {
    engine.on("message", (message: FromEngine) => this.onEngineMessage(message));
    layout.on("message", (message: FromLayout) => this.jobs.get(message.job)?.resolve(message));
    for (const worker of [engine, layout]) {
      worker.on("error", (err) => this.fail(err));
      worker.on("exit", (code) => this.fail(new Error(`an engine thread exited (code ${code})`)));
    }
  }

  static async start(options: EngineThreadOptions, observer?: AssemblyObserver): Promise<EngineThread> {
    const { layoutHold, ...setup } = options;
    const engine = startWorker("engine-worker", setup);
    const first = await new Promise<FromEngine>((resolve, reject) => {
      engine.once("message", resolve);
      engine.once("error", reject);
      engine.once("exit", (code) => reject(new Error(`the engine thread exited (code ${code}) before it was ready`)));
    });
    if (first.type !== "ready") {
      await engine.terminate();
      throw first.type === "failed" ? fromWire(first.error) : new Error(`unexpected first message from the engine: ${first.type}`);
    }
    const layoutSetup: LayoutWorkerSetup = { backbone: first.backbone, int8: first.int8, threads: setup.threads, hold: layoutHold };
    const layout = startWorker("layout-worker", layoutSetup);
    return new EngineThread(engine, layout, first.backbone, first.int8, options.slots, observer);
  }

  /** Lays out and installs each route; resolves once the engine will find them, and installs none if one fails. */
  async prepare(routes: readonly FusionRoute[]): Promise<void> {
    const outcomes = await Promise.allSettled(routes.map((route) => this.install(route)));
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
    if (!failed) return;
    this.retire(routes);
    throw failed.reason;
  }

  /** The library no longer serves these routes; each is released once no request uses it. */
  retire(routes: readonly FusionRoute[]): void {
    for (const route of routes) {
      const entry = this.installed.get(route);
      if (!entry) continue;
      entry.retired = true;
      this.releaseIfUnused(route, entry);
    }
  }

  /** A request admitted on `route` holds it installed until `release`. */
  acquire(route: FusionRoute): void {
    const entry = this.installed.get(route);
    if (!entry) throw new UnavailableError("route_not_installed", `route '${route.name}' version ${route.version} is not installed in the engine`);
    entry.users++;
  }

  release(route: FusionRoute): void {
    const entry = this.installed.get(route);
    if (!entry) return;
    entry.users--;
    this.releaseIfUnused(route, entry);
  }

  /** One forward pass over inputs of up to `slots` routes, inputs ordered by slot. */
  run(batch: TokenBatch, slots: readonly PassSlot[]): Promise<PassOutcome> {
    if (this.broken) return Promise.reject(this.unavailable());
    const pass = this.nextId++;
    const message: ToEngine = {
      type: "run",
      pass,
      batch: { seqLen: batch.seqLen, ids: batch.ids, mask: batch.mask, lengths: batch.lengths, segments: batch.segments },
      slots: slots.map(({ route, inputs, explain }) => ({ route: this.installed.get(route)!.id, inputs, explain })),
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

  /** Anything still pending is refused (the server closes the engine once every request is answered). */
  async close(): Promise<void> {
    this.failureListeners.length = 0;
    this.fail(new Error("the engine was closed"));
    await Promise.all([this.engine.terminate(), this.layout.terminate()]);
  }

  private async install(route: FusionRoute): Promise<void> {
    if (this.installed.has(route)) return;
    if (this.broken) throw this.unavailable();
    const job = this.nextId++;
    const request: ToLayout = { job, adapters: route.adapters.map(shared), fusion: route.fusion && shared(route.fusion) };
    const reply = await new Promise<FromLayout>((resolve, reject) => {
      this.jobs.set(job, { resolve, reject });
      this.layout.postMessage(request);
    }).finally(() => this.jobs.delete(job));
    if ("error" in reply) throw fromWire(reply.error);
    this.observer?.routeAssembled(route.name, reply.seconds);
    const id = this.nextId++;
    this.installed.set(route, { id, users: 0, retired: false });
    const message: ToEngine = { type: "install", route: id, feeds: reply.feeds, head: shared(route.head) };
    this.engine.postMessage(message, feedBuffers(reply.feeds));
  }

  private releaseIfUnused(route: FusionRoute, entry: Installed): void {
    if (!entry.retired || entry.users > 0) return;
    this.installed.delete(route);
    if (!this.broken) this.engine.postMessage({ type: "release", route: entry.id } satisfies ToEngine);
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

const sharedCopies = new WeakMap<object, unknown>();

/**
 * The module with its weights in shared memory, made once per loaded module: posted to another
 * thread, its arrays are shared rather than copied, so laying out a route after a swap does not
 * copy every module it fuses (and leaves the other thread no copies to collect).
 */
function shared<T extends object>(module: T): T {
  let copy = sharedCopies.get(module);
  if (!copy) {
    copy = share(module);
    sharedCopies.set(module, copy);
  }
  return copy as T;
}

function share(value: unknown): unknown {
  if (value instanceof Float32Array) {
    const copy = new Float32Array(new SharedArrayBuffer(value.byteLength));
    copy.set(value);
    return copy;
  }
  // Modules hold float32 tensors only; anything else would silently become a plain object below.
  if (ArrayBuffer.isView(value)) throw new Error(`cannot share a ${value.constructor.name} with the engine's threads`);
  if (Array.isArray(value)) return value.map(share);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([key, v]) => [key, share(v)]));
  return value;
}

/**
 * Starts a worker on its module: the built .js, or, when this file runs from TypeScript source
 * (tests, benchmarks), the .ts through tsx, whose loader Node 20 does not pass on to workers.
 */
function startWorker(name: string, workerData: unknown): Worker {
  const source = extname(fileURLToPath(import.meta.url)) === ".ts";
  const url = new URL(`./thread/${name}${source ? ".ts" : ".js"}`, import.meta.url);
  if (!source) return new Worker(url, { workerData });
  const tsx = import.meta.resolve("tsx/esm/api");
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData });
}
