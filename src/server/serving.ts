import { resolve } from "node:path";
import fp from "fastify-plugin";
import type { FastifyBaseLogger } from "fastify";
import { effectiveMaxSeqLen, type ServerConfig } from "../config.js";
import { loadBackbone } from "../engine/backbone.js";
import { FusionEngine } from "../engine/engine.js";
import { TextTokenizer } from "../engine/tokenizer.js";
import { UnavailableError } from "../errors.js";
import { AdapterLibrary } from "../library/library.js";
import { readManifest } from "../library/manifest.js";
import { Batcher } from "./batcher.js";

/** Everything loaded from the model library: what a prediction needs. */
export interface ModelRuntime {
  readonly library: AdapterLibrary;
  readonly engine: FusionEngine;
  readonly tokenizer: TextTokenizer;
  readonly hiddenSize: number;
  readonly maxSeqLen: number;
}

/** Loads the backbone named by the library's manifest, the library itself, the tokenizer and the engine. */
export async function loadRuntime(config: ServerConfig, log: FastifyBaseLogger): Promise<ModelRuntime> {
  const started = Date.now();
  const manifest = await readManifest(config.library);
  const backboneDir = resolve(config.library, manifest.backbone);
  const backbone = await loadBackbone(backboneDir);
  const maxSeqLen = effectiveMaxSeqLen(config, backbone.config.maxPositions);
  const library = await AdapterLibrary.open(config.library, backbone.config);
  const tokenizer = await TextTokenizer.load(backboneDir, maxSeqLen);
  const engine = await FusionEngine.create(backbone, { device: config.device, precision: config.precision, threads: config.threads, variant: "fused" });
  const { routes, adapters, fusions } = library.state;
  log.info(
    { library: config.library, backbone: backboneDir, routes: [...routes.keys()], adapters: adapters.size, fusions: fusions.size, maxSeqLen, precision: config.precision, ms: Date.now() - started },
    "model library loaded",
  );
  return { library, engine, tokenizer, hiddenSize: backbone.config.hiddenSize, maxSeqLen };
}

export type ServingPhase = "loading" | "ready" | "draining";

/**
 * The server's lifecycle: it listens while the library loads ("loading"), serves once a runtime is
 * attached ("ready"), and reports "draining" once shutdown begins, so a load balancer sends traffic
 * only in between. Draining refuses nothing by itself: fastify stops accepting connections, and
 * every request already received (even one whose body is still arriving) is answered.
 */
export class Serving {
  private current: { runtime: ModelRuntime; batcher: Batcher } | undefined;
  private state: ServingPhase = "loading";

  constructor(
    private readonly config: ServerConfig,
    private readonly makeBatcher: (runtime: ModelRuntime) => Batcher,
  ) {}

  get phase(): ServingPhase {
    return this.state;
  }

  get runtime(): ModelRuntime | undefined {
    return this.current?.runtime;
  }

  get queueDepth(): number {
    return this.current?.batcher.depth ?? 0;
  }

  attach(runtime: ModelRuntime): void {
    this.current = { runtime, batcher: this.makeBatcher(runtime) };
    if (this.state === "loading") this.state = "ready";
  }

  /** The runtime and batcher, or a 503 while the library loads. */
  require(): { runtime: ModelRuntime; batcher: Batcher } {
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
    const serving = new Serving(config, (runtime) => new Batcher(runtime.engine, runtime.hiddenSize, config, app.metrics));
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
