import type { FastifyPluginAsync } from "fastify";
import { errorResponses } from "../errors.js";

/** GET /metrics — the server's registry in Prometheus text format. */
export const metricsRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    "/metrics",
    {
      config: { answersWhileStopping: true },
      schema: {
        summary: "Prometheus metrics",
        operationId: "getMetrics",
        tags: ["operations"],
        produces: ["text/plain"],
        response: { 200: { type: "string", description: "Prometheus text exposition format 0.0.4" }, ...errorResponses() },
      },
    },
    async (_request, reply) => {
      const { registry } = app.metrics;
      return reply.type(registry.contentType).send(await registry.metrics());
    },
  );
};
