import { resolve } from "node:path";
import fp from "fastify-plugin";
import type { FastifyBaseLogger } from "fastify";
import { effectiveMaxSeqLen, type ServerConfig } from "../config.js";
import { EngineThread, type AssemblyObserver } from "../engine/engine-thread.js";
import { TextTokenizer } from "../engine/tokenizer.js";
import { UnavailableError } from "../errors.js";
import { AdapterLibrary } from "../library/library.js";
import { readManifest } from "../library/manifest.js";
import { Scheduler } from "../scheduler/scheduler.js";

/** Everything loaded from the model library: what a prediction needs. */
export interface ModelRuntime {
  readonly library: AdapterLibrary;
  readonly engine: EngineThread;
  readonly tokenizer: TextTokenizer;
  readonly maxSeqLen: number;
}

/**
 * Starts the engine on the backbone named by the library's manifest (in its own threads), then
 * opens the library with the engine as its route host, and loads the tokenizer.
 */
export async function loadRuntime(config: ServerConfig, log: FastifyBaseLogger, observer?: AssemblyObserver): Promise<ModelRuntime> {
  const started = Date.now();
  const manifest = await readManifest(config.library);
  const backboneDir = resolve(config.library, manifest.backbone);
  const engine = await EngineThread.start(
    { backboneDir, device: config.device, precision: config.precision, int8Weights: config.int8Weights, threads: config.threads, slots: config.routeSlots },
    observer,
  );
  try {
    const maxSeqLen = effectiveMaxSeqLen(config, engine.backbone.maxPositions);
    const library = await AdapterLibrary.open(config.library, engine.backbone, engine);
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
        precision: config.precision,
        int8: engine.int8,
        routeSlots: config.routeSlots,
        scheduling: config.scheduling,
        ms: Date.now() - started,
      },
      "model library loaded",
    );
    return { library, engine, tokenizer, maxSeqLen };
  } catch (err) {
    await engine.close();
    throw err;
  }
}

export type ServingPhase = "loading" | "ready" | "draining";

/**
 * The server's lifecycle: it listens while the library loads ("loading"), serves once a runtime is
 * attached ("ready"), and reports "draining" once shutdown begins, so a load balancer sends traffic
 * only in between. Draining refuses nothing by itself: fastify stops accepting connections, and
 * every request already received (even one whose body is still arriving) is answered.
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

  drain(): void {
    this.state = "draining";
  }

  async close(): Promise<void> {
    this.drain();
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
      const state = serving.runtime?.library.state;
      return state && { adapters: state.adapters.size, fusions: state.fusions.size, routes: state.routes.size, queueDepth: serving.queueDepth };
    });
    app.addHook("preClose", async () => serving.drain());
    // Keep-alive connections would hold the closing server open until they time out: answers
    // given while draining tell the client to close the connection.
    app.addHook("onSend", async (_request, reply) => {
      if (serving.phase === "draining") reply.header("connection", "close");
    });
    app.addHook("onClose", async () => serving.close());
  },
  { name: "serving", dependencies: ["metrics"] },
);
