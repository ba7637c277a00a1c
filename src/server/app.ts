import Fastify, { type FastifyInstance, LogController } from "fastify";
import type { ServerConfig } from "../config.js";
import { adminPlugin } from "./admin/plugin.js";
import { apiKeyPlugin } from "./api-key.js";
import { limitConnections } from "./connections.js";
import { answerOutsideFastify, errorsPlugin, OIP_PREFIX, parseJsonBody, transportErrorOptions } from "./errors.js";
import { metricsPlugin } from "./metrics.js";
import { requestId, requestIdPlugin } from "./request-id.js";
import { docsPlugin } from "./routes/docs.js";
import { fusionsRoutes } from "./routes/fusions.js";
import { healthRoutes } from "./routes/health.js";
import { infoRoutes } from "./routes/info.js";
import { metricsRoutes } from "./routes/metrics.js";
import { predictRoutes } from "./routes/predict.js";
import { oipRoutes } from "./oip/plugin.js";
import { servingPlugin } from "./serving.js";

/**
 * The fastify application, without a model library: attach one with `app.serving.attach(runtime)`
 * (until then /ready and the prediction routes answer 503). main.ts and the tests both build it here.
 */
/** The probes and the metrics scrape, logged only with --access-log all. */
const QUIET_ROUTES = new Set(["/health", "/ready", "/metrics", "/v2/health/live", "/v2/health/ready"]);

export async function buildApp(config: ServerConfig): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { level: config.logLevel },
    // Probes and scrapes arrive every few seconds from every kubelet and Prometheus: their lines would bury the requests'.
    logController: new LogController({
      disableRequestLogging: (request) => config.accessLog === "off" || (config.accessLog === "requests" && QUIET_ROUTES.has(request.routeOptions.url ?? "")),
    }),
    genReqId: requestId,
    bodyLimit: config.maxBodyBytes,
    ...transportErrorOptions({ maxBodyBytes: config.maxBodyBytes }),
    // Slow clients: a request must arrive whole within these bounds, or its connection is closed.
    requestTimeout: config.receiveTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    http: {
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.receiveTimeoutMs,
      // Node checks both timeouts only at this interval (30 s by default), which would stretch short bounds.
      connectionsCheckingInterval: Math.min(1_000, config.headersTimeoutMs),
    },
    ajv: {
      // A number where a string belongs is the client's bug: refuse it, never coerce it; refuse unknown fields too.
      customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allowUnionTypes: true },
    },
  });
  limitConnections(app.server, config);
  answerOutsideFastify(app);
  // The API speaks JSON only: any other body is a 415, not a string that fails validation later.
  app.removeContentTypeParser("text/plain");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => done(null, parseJsonBody(body as string)));
  await app.register(metricsPlugin, { requestTimeoutMs: config.requestTimeoutMs, commit: config.commit });
  await app.register(servingPlugin, { config });
  await app.register(errorsPlugin, { maxBodyBytes: config.maxBodyBytes });
  await app.register(requestIdPlugin);
  await app.register(docsPlugin);
  await app.register(apiKeyPlugin, { apiKey: config.apiKey, metrics: config.apiKeyMetrics });
  await app.register(healthRoutes);
  await app.register(infoRoutes, { config });
  await app.register(metricsRoutes);
  await app.register(fusionsRoutes);
  await app.register(predictRoutes, { config });
  await app.register(oipRoutes, { prefix: OIP_PREFIX, config });
  if (config.adminToken) {
    await app.register(adminPlugin, {
      token: config.adminToken,
      registry: app.metrics.registry,
      maxUploadBytes: config.maxUploadBytes,
      keepVersions: config.keepVersions,
      library: () => app.serving.require().runtime.library,
    });
  } else {
    app.log.info("admin API disabled: set ADMIN_TOKEN to serve /v1/admin");
  }
  return app;
}
