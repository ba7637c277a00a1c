import { performance } from "node:perf_hooks";
import fp from "fastify-plugin";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { PACKAGE } from "../config.js";
import type { PredictTiming } from "../core/predict.js";
import type { AssemblyObserver, LayoutCause } from "../engine/engine-thread.js";
import type { PassStats, SchedulerObserver } from "../scheduler/scheduler.js";

/** What the library and queue look like right now; read at every scrape. */
export interface ServingSnapshot {
  readonly adapters: number;
  readonly fusions: number;
  readonly routes: number;
  readonly queueDepth: number;
  /** [route, version] of every route served. */
  readonly routeVersions: readonly (readonly [string, string])[];
  /** Whether the live library is its store's current manifest. */
  readonly inSync: boolean;
  /** Route layouts resident in the engine. */
  readonly residentRoutes: number;
  /** Bytes held: the backbone's graph, the modules' tensors, the resident route layouts. */
  readonly memory: { readonly backbone: number; readonly modules: number; readonly routeLayouts: number; readonly directFeeds: number };
}

/**
 * The server's Prometheus instruments in their own registry (not prom-client's global one), so
 * two servers in one process, as in the tests, never share or clash over counters.
 */
export class ServerMetrics implements SchedulerObserver, AssemblyObserver {
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

  private readonly recomputedAnswers = new Counter({
    name: "library_answers_recomputed_total",
    help: "Predictions computed again because the store's manifest replaced their route while they ran (--library-consistency strict)",
    labelNames: ["fusion"] as const,
    registers: [this.registry],
  });

  private readonly requestPhaseSeconds = new Histogram({
    name: "fusion_request_phase_seconds",
    help: "Where an answered prediction's time went, by phase: parse, tokenize, queue, pass, hop, confirm (strict replicas only), serialize; they add up to the request's duration",
    labelNames: ["phase"] as const,
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  private readonly queueWaitSeconds: Histogram<"fusion">;

  private readonly inferenceSeconds = new Histogram({
    name: "fusion_inference_seconds",
    help: "Time of one batched forward pass, prediction heads included, by each route it served",
    labelNames: ["fusion"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  private readonly batchSize = new Histogram({
    name: "fusion_batch_size",
    help: "Inputs of one route coalesced into one forward pass",
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

  private readonly passInputs = new Histogram({
    name: "fusion_pass_inputs",
    help: "Inputs of one forward pass, all its routes together",
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });

  private readonly passRoutes = new Histogram({
    name: "fusion_pass_routes",
    help: "Routes served by one forward pass",
    buckets: [1, 2, 3, 4, 6, 8, 12, 16, 32, 64],
    registers: [this.registry],
  });

  private readonly passTokens = new Counter({
    name: "fusion_pass_tokens_total",
    help: "Tokens of forward passes: real (the inputs' own) and computed (rows × longest input, padding included)",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });

  private readonly inputTokens = new Histogram({
    name: "fusion_input_tokens",
    help: "Length of each input that ran, in tokens (special tokens included)",
    buckets: [4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512],
    registers: [this.registry],
  });

  private readonly assemblySeconds = new Histogram({
    name: "fusion_route_assembly_seconds",
    help: "Time to lay out one route's weights for the engine (in the layout thread)",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  private readonly routeLayouts = new Counter({
    name: "fusion_route_layouts_total",
    help: "Route layouts built, by cause: request (traffic on a route that was not resident), pinned, replacement (a change replaced a resident route)",
    labelNames: ["cause"] as const,
    registers: [this.registry],
  });

  private readonly routeEvictions = new Counter({
    name: "fusion_route_evictions_total",
    help: "Resident route layouts evicted, the least used lately first, to stay within --max-resident-routes and --max-resident-mib",
    registers: [this.registry],
  });

  private readonly slotsByForm = new Counter({
    name: "fusion_pass_slots_total",
    help: "Routes served by forward passes, by form: folded (from a resident layout) or direct (from the modules unfolded: a route whose layout is not resident, a little slower per token)",
    labelNames: ["form"] as const,
    registers: [this.registry],
  });

  /** `requestTimeoutSeconds` bounds the queue-wait buckets: no input waits longer. `commit`: of this build, if known. */
  constructor(requestTimeoutSeconds = 30, commit?: string) {
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "fusion_build_info",
      help: "The server's version, source commit (unknown when not set at build) and Node.js version (value 1)",
      labelNames: ["version", "commit", "node"] as const,
      registers: [this.registry],
    }).set({ version: PACKAGE.version, commit: commit ?? "unknown", node: process.version }, 1);
    const waitBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300].filter((b) => b < requestTimeoutSeconds);
    this.queueWaitSeconds = new Histogram({
      name: "fusion_queue_wait_seconds",
      help: "Time an input waited before its forward pass started",
      labelNames: ["fusion"] as const,
      buckets: [...waitBuckets, requestTimeoutSeconds],
      registers: [this.registry],
    });
    // prom-client calls collect() with `this` bound to the gauge, so the registry's owner needs a name of its own.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
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
    snapshotGauge("fusion_resident_routes", "Route layouts resident in the engine (the other routes are served unfolded)", (s) => s.residentRoutes);
    new Gauge({
      name: "fusion_memory_bytes",
      help: "Bytes held, by part: backbone (the engine's graph), modules (adapter and fusion tensors, heads included), route_layouts (resident layouts), direct_feeds (the unfolded inputs of routes without a layout, in use or kept)",
      labelNames: ["part"] as const,
      registers: [this.registry],
      collect() {
        const memory = metrics.snapshot()?.memory;
        this.set({ part: "backbone" }, memory?.backbone ?? 0);
        this.set({ part: "modules" }, memory?.modules ?? 0);
        this.set({ part: "route_layouts" }, memory?.routeLayouts ?? 0);
        this.set({ part: "direct_feeds" }, memory?.directFeeds ?? 0);
      },
    });
    snapshotGauge("fusion_queue_depth", "Inputs waiting for a forward pass, all routes", (s) => s.queueDepth);
    snapshotGauge("library_in_sync", "1 while the live library is its store's current manifest; 0 while this replica cannot read or load it (it serves the previous one)", (s) =>
      s.inSync ? 1 : 0,
    );
    // Computed from the live state at each scrape, so it never lags a change; served with or without the admin API, so a dashboard sees drift between replicas.
    new Gauge({
      name: "fusion_version_info",
      help: "Live version of each route (value 1)",
      labelNames: ["fusion", "version"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [fusion, version] of metrics.snapshot()?.routeVersions ?? []) this.set({ fusion, version }, 1);
      },
    });
    // The same under its earlier name, whose label said `route` where every other metric says `fusion`; kept for one release (CHANGELOG).
    new Gauge({
      name: "route_version_info",
      help: "Deprecated: fusion_version_info under its earlier name and label (value 1)",
      labelNames: ["route", "version"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [route, version] of metrics.snapshot()?.routeVersions ?? []) this.set({ route, version }, 1);
      },
    });
  }

  /** Gives the scrape-time gauges their source once the library is loaded. */
  watch(snapshot: () => ServingSnapshot | undefined): void {
    this.snapshot = snapshot;
  }

  recomputed(route: string): void {
    this.recomputedAnswers.inc({ fusion: route });
  }

  /** One answered prediction: `received` and `sent` (performance.now()) bound its request, `timing` what happened between. */
  requestPhases(timing: PredictTiming, received: number, sent: number): void {
    const observe = (phase: string, seconds: number) => this.requestPhaseSeconds.observe({ phase }, seconds);
    observe("parse", (timing.started - received) / 1000);
    observe("tokenize", timing.tokenize);
    observe("queue", timing.queue);
    observe("pass", timing.pass);
    observe("hop", timing.hop);
    if (timing.confirm !== undefined) observe("confirm", timing.confirm);
    observe("serialize", (sent - timing.answered) / 1000);
  }

  queueWait(route: string, seconds: number): void {
    this.queueWaitSeconds.observe({ fusion: route }, seconds);
  }

  pass(stats: PassStats): void {
    for (const [route, { inputs, tokens }] of stats.routes) {
      this.batchSize.observe({ fusion: route }, inputs);
      this.inferenceSeconds.observe({ fusion: route }, stats.seconds);
      this.tokens.inc({ fusion: route }, tokens);
    }
    this.passInputs.observe(stats.inputs);
    this.passRoutes.observe(stats.routes.size);
    this.passTokens.inc({ kind: "real" }, stats.realTokens);
    this.passTokens.inc({ kind: "computed" }, stats.computedTokens);
    for (const length of stats.lengths) this.inputTokens.observe(length);
  }

  routeAssembled(_route: string, seconds: number, cause: LayoutCause): void {
    this.assemblySeconds.observe(seconds);
    this.routeLayouts.inc({ cause });
  }

  routeEvicted(): void {
    this.routeEvictions.inc();
  }

  passSlots(folded: number, direct: number): void {
    this.slotsByForm.inc({ form: "folded" }, folded);
    this.slotsByForm.inc({ form: "direct" }, direct);
  }
}

declare module "fastify" {
  interface FastifyInstance {
    metrics: ServerMetrics;
  }
  interface FastifyRequest {
    /** The fusion route a request resolved to, for the latency label; empty when it resolved to none. */
    fusionRoute: string;
    /** A prediction's phases, set by the handler it answered (fusion_request_phase_seconds); undefined for every other request. */
    predictTiming: PredictTiming | undefined;
  }
}

/** Decorates `metrics`, times every request, and splits each answered prediction's time into its phases. */
export const metricsPlugin = fp<{ requestTimeoutMs: number; commit: string | undefined }>(
  async (app, { requestTimeoutMs, commit }) => {
    const metrics = new ServerMetrics(requestTimeoutMs / 1000, commit);
    app.decorate("metrics", metrics);
    app.decorateRequest("fusionRoute", "");
    app.decorateRequest("predictTiming", undefined);
    app.addHook("onRequest", async (_request, reply) => {
      metrics.inFlight.inc();
      // 'close' fires for answered and abandoned requests alike, so the gauge never leaks.
      reply.raw.once("close", () => metrics.inFlight.dec());
    });
    app.addHook("onResponse", async (request, reply) => {
      // The response's end and its start as fastify timed them, so the phases add up to the request's duration.
      const sent = performance.now();
      if (request.predictTiming) metrics.requestPhases(request.predictTiming, sent - reply.elapsedTime, sent);
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
