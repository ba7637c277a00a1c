import fp from "fastify-plugin";
import type { FastifyBaseLogger } from "fastify";
import { effectiveMaxSeqLen, type ServerConfig } from "../config.js";
import { loadBackbone } from "../engine/backbone.js";
import { EngineThread, type AssemblyObserver } from "../engine/engine-thread.js";
import { resolvePrecision } from "../engine/precision.js";
import { TextTokenizer } from "../engine/tokenizer.js";
import { UnavailableError } from "../errors.js";
import { AdapterLibrary } from "../library/library.js";
import { isObjectStoreUrl, ObjectLibraryStore } from "../library/object-store.js";
import { LibraryStore, type VersionStore } from "../library/store.js";
import { Scheduler } from "../scheduler/scheduler.js";

/** Everything loaded from the model library: what a prediction needs. */
export interface ModelRuntime {
  readonly library: AdapterLibrary;
  readonly engine: EngineThread;
  readonly tokenizer: TextTokenizer;
  readonly maxSeqLen: number;
  /** Stops following a shared store's changes; absent for a runtime that follows none. */
  readonly close?: () => void;
}

/**
 * Starts the engine on the backbone named by the library's manifest (in its own threads), then
 * opens the library with the engine as its route host, and loads the tokenizer.
 */
export async function loadRuntime(config: ServerConfig, log: FastifyBaseLogger, observer?: AssemblyObserver): Promise<ModelRuntime> {
  const started = Date.now();
  const store = openStore(config);
  const read = await store.readManifest();
  const backboneDir = await store.backboneDir(read.manifest);
  const precision = await resolvePrecision(config.precision, () => loadBackbone(backboneDir), {
    device: config.device,
    threads: config.threads,
    int8Weights: config.int8Weights,
    slots: config.routeSlots,
    batchInputs: config.maxBatchSize,
  });
  const engine = await EngineThread.start(
    {
      backboneDir,
      device: config.device,
      precision: precision.precision,
      int8Weights: config.int8Weights,
      threads: config.threads,
      slots: config.routeSlots,
      residency: { maxRoutes: config.maxResidentRoutes, maxBytes: config.maxResidentMib * 2 ** 20, pinned: new Set(config.pinRoutes) },
    },
    observer,
  );
  try {
    const maxSeqLen = effectiveMaxSeqLen(config, engine.backbone.maxPositions);
    const library = await AdapterLibrary.open(store, engine.backbone, engine, read);
    const tokenizer = await TextTokenizer.load(backboneDir, maxSeqLen);
    const { routes, adapters, fusions } = library.state;
    log.info(
      {
        library: config.library,
        backbone: backboneDir,
        routes: [...routes.keys()],
        adapters: adapters.size,
        fusions: fusions.size,
        maxSeqLen,
        precision: precision.precision,
        precisionReason: precision.reason,
        int8: engine.int8,
        routeSlots: config.routeSlots,
        scheduling: config.scheduling,
        ms: Date.now() - started,
      },
      "model library loaded",
    );
    const stop = store instanceof ObjectLibraryStore ? follow(library, config.libraryPollMs, log) : () => undefined;
    return {
      library,
      engine,
      tokenizer,
      maxSeqLen,
      close: () => {
        stop();
        if (store instanceof ObjectLibraryStore) store.close();
      },
    };
  } catch (err) {
    await engine.close();
    throw err;
  }
}

function openStore(config: ServerConfig): VersionStore {
  if (!isObjectStoreUrl(config.library)) return new LibraryStore(config.library);
  return new ObjectLibraryStore({
    url: config.library,
    endpoint: config.s3Endpoint,
    pathStyle: config.s3PathStyle === "auto" ? undefined : config.s3PathStyle === "true",
    cacheDir: config.libraryCache,
    timeoutMs: config.s3TimeoutMs,
  });
}

/**
 * Checks a shared store's manifest every `pollMs` and publishes what changed. A change this replica
 * cannot load is logged once, when it starts failing (or fails differently), and tried again at
 * every poll; /ready and `library_in_sync` say so meanwhile.
 */
function follow(library: AdapterLibrary, pollMs: number, log: FastifyBaseLogger): () => void {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let lastError: string | undefined;
  const poll = async () => {
    const started = Date.now();
    const routes = await library.refresh();
    const { inSync, error, etag } = library.sync;
    if (!inSync && error !== lastError) log.warn({ library: library.location, error }, "library out of sync: still serving the previous manifest; retrying");
    if (inSync && lastError !== undefined) log.info({ library: library.location, etag }, "library back in sync");
    if (routes.length > 0) log.info({ library: library.location, etag, routes }, "library changed by another replica: published");
    lastError = inSync ? undefined : error;
    // Polls start every pollMs, however long the last one took, so a change is seen within one interval of its write.
    if (!stopped) timer = setTimeout(poll, Math.max(0, pollMs - (Date.now() - started)));
  };
  timer = setTimeout(poll, pollMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export type ServingPhase = "loading" | "ready" | "draining" | "stopping";

/**
 * The server's lifecycle: it listens while the library loads ("loading"), serves once a runtime is
 * attached ("ready"), and reports 503 on /ready from the moment shutdown begins, so a load balancer
 * sends traffic only in between. "draining" refuses nothing: load balancers and Kubernetes'
 * endpoints take a while to notice, and whatever they still send, on old or new connections, is
 * served. "stopping" follows once fastify stops accepting connections: every request already
 * received (even one whose body is still arriving) is answered, later ones on open keep-alive
 * connections get 503 shutting_down.
 */
export class Serving {
  private current: { runtime: ModelRuntime; scheduler: Scheduler } | undefined;
  private state: ServingPhase = "loading";

  constructor(
    private readonly config: ServerConfig,
    private readonly makeScheduler: (runtime: ModelRuntime) => Scheduler,
  ) {}

  get phase(): ServingPhase {
    return this.state;
  }

  get runtime(): ModelRuntime | undefined {
    return this.current?.runtime;
  }

  get queueDepth(): number {
    return this.current?.scheduler.depth ?? 0;
  }

  attach(runtime: ModelRuntime): void {
    this.current = { runtime, scheduler: this.makeScheduler(runtime) };
    if (this.state === "loading") this.state = "ready";
  }

  /** The runtime and scheduler, or a 503 while the library loads. */
  require(): { runtime: ModelRuntime; scheduler: Scheduler } {
    if (!this.current) throw new UnavailableError("not_ready", `the model library (${this.config.library}) is still loading`);
    return this.current;
  }

  /** /ready answers 503; everything else is still served. */
  drain(): void {
    if (this.state !== "stopping") this.state = "draining";
  }

  /** Requests that arrive from now on are refused with 503 shutting_down (the probes excepted). */
  stop(): void {
    this.state = "stopping";
  }

  async close(): Promise<void> {
    this.stop();
    this.current?.runtime.close?.();
    await this.current?.runtime.engine.close();
  }
}

declare module "fastify" {
  interface FastifyInstance {
    serving: Serving;
  }
}

/** Decorates `serving`; closing the app closes the engine once every in-flight request is answered. */
export const servingPlugin = fp<{ config: ServerConfig }>(
  async (app, { config }) => {
    const serving = new Serving(config, (runtime) => new Scheduler(runtime.engine, config, app.metrics));
    app.decorate("serving", serving);
    app.metrics.watch(() => {
      const runtime = serving.runtime;
      if (!runtime) return undefined;
      const { library, engine } = runtime;
      const { state } = library;
      const resident = engine.residencyNow;
      return {
        adapters: state.adapters.size,
        fusions: state.fusions.size,
        routes: state.routes.size,
        queueDepth: serving.queueDepth,
        routeVersions: [...state.routes.values()].map((r) => [r.name, r.version] as const),
        inSync: library.sync.inSync,
        residentRoutes: resident.routes,
        memory: { backbone: engine.backboneBytes, modules: library.moduleBytes, routeLayouts: resident.bytes },
      };
    });
    app.addHook("preClose", async () => serving.stop());
    // Keep-alive connections would hold the closing server open until they time out, and keep
    // sending here once a load balancer has moved on: answers given from the moment shutdown
    // begins tell the client to close the connection, so its next one goes elsewhere.
    app.addHook("onSend", async (_request, reply) => {
      if (serving.phase === "draining" || serving.phase === "stopping") reply.header("connection", "close");
    });
    app.addHook("onClose", async () => serving.close());
  },
  { name: "serving", dependencies: ["metrics"] },
);
