import fp from "fastify-plugin";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { BatchObserver } from "./batcher.js";

/** What the library and queue look like right now; read at every scrape. */
export interface ServingSnapshot {
  readonly adapters: number;
  readonly fusions: number;
  readonly routes: number;
  readonly queueDepth: number;
}

/**
 * The server's Prometheus instruments in their own registry (not prom-client's global one), so
 * two servers in one process, as in the tests, never share or clash over counters.
 */
export class ServerMetrics implements BatchObserver {
  readonly registry = new Registry();
  private snapshot: () => ServingSnapshot | undefined = () => undefined;

  readonly requestDuration = new Histogram({
    name: "http_request_duration_seconds",
    help: "Time from receiving a request to finishing its response, by route template, fusion route and status",
    labelNames: ["method", "route", "fusion", "status_code"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly inFlight = new Gauge({
    name: "http_requests_in_flight",
    help: "HTTP requests received and not yet answered",
    registers: [this.registry],
  });

  readonly rejected = new Counter({
    name: "fusion_requests_rejected_total",
    help: "Requests answered with an error, by error code (overloaded, timeout, invalid_request, ...)",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  private readonly queueWaitSeconds = new Histogram({
    name: "fusion_queue_wait_seconds",
    help: "Time an input waited in its route's queue before its forward pass started",
    labelNames: ["fusion"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  private readonly inferenceSeconds = new Histogram({
    name: "fusion_inference_seconds",
    help: "Time of one batched forward pass, prediction heads included",
    labelNames: ["fusion"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  private readonly batchSize = new Histogram({
    name: "fusion_batch_size",
    help: "Inputs coalesced into one forward pass",
    labelNames: ["fusion"] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });

  private readonly tokens = new Counter({
    name: "fusion_tokens_processed_total",
    help: "Tokens run through the model (special tokens included, padding excluded)",
    labelNames: ["fusion"] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    const metrics = this;
    const snapshotGauge = (name: string, help: string, read: (s: ServingSnapshot) => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          const s = metrics.snapshot();
          this.set(s ? read(s) : 0);
        },
      });
    snapshotGauge("fusion_loaded_adapters", "Adapters loaded in the library", (s) => s.adapters);
    snapshotGauge("fusion_loaded_fusions", "Fusions loaded in the library", (s) => s.fusions);
    snapshotGauge("fusion_routes", "Routes served: every fusion, and every adapter with a head", (s) => s.routes);
    snapshotGauge("fusion_queue_depth", "Inputs waiting for a forward pass, all routes", (s) => s.queueDepth);
  }

  /** Gives the scrape-time gauges their source once the library is loaded. */
  watch(snapshot: () => ServingSnapshot | undefined): void {
    this.snapshot = snapshot;
  }

  queueWait(route: string, seconds: number): void {
    this.queueWaitSeconds.observe({ fusion: route }, seconds);
  }

  batch(route: string, stats: { inputs: number; tokens: number; seconds: number }): void {
    this.batchSize.observe({ fusion: route }, stats.inputs);
    this.inferenceSeconds.observe({ fusion: route }, stats.seconds);
    this.tokens.inc({ fusion: route }, stats.tokens);
  }
}

declare module "fastify" {
  interface FastifyInstance {
    metrics: ServerMetrics;
  }
  interface FastifyRequest {
    /** The fusion route a request resolved to, for the latency label; empty when it resolved to none. */
    fusionRoute: string;
  }
}

/** Decorates `metrics` and times every request. */
export const metricsPlugin = fp(
  async (app) => {
    const metrics = new ServerMetrics();
    app.decorate("metrics", metrics);
    app.decorateRequest("fusionRoute", "");
    app.addHook("onRequest", async (_request, reply) => {
      metrics.inFlight.inc();
      // 'close' fires for answered and abandoned requests alike, so the gauge never leaks.
      reply.raw.once("close", () => metrics.inFlight.dec());
    });
    app.addHook("onResponse", async (request, reply) => {
      metrics.requestDuration.observe(
        {
          method: request.method,
          route: request.routeOptions.url ?? "unmatched",
          fusion: request.fusionRoute,
          status_code: String(reply.statusCode),
        },
        reply.elapsedTime / 1000,
      );
    });
  },
  { name: "metrics" },
);
