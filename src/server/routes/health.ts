import type { FastifyPluginAsync } from "fastify";
import { errorResponses } from "../errors.js";

const statusBody = (description: string, values: readonly string[]) =>
  ({ description, type: "object", required: ["status"], properties: { status: { type: "string", enum: values } } }) as const;

/** GET /health (the process answers) and GET /ready (the library is loaded and the server is not shutting down). */
export const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    "/health",
    { config: { answersWhileDraining: true }, schema: { summary: "Liveness", tags: ["operations"], response: { 200: statusBody("The process is up", ["ok"]), ...errorResponses() } } },
    async () => ({ status: "ok" }),
  );

  app.get(
    "/ready",
    {
      config: { answersWhileDraining: true },
      schema: {
        summary: "Readiness",
        description: "200 once the model library is loaded; 503 while it loads and once shutdown has begun.",
        tags: ["operations"],
        response: { ...errorResponses(), 200: statusBody("Serving predictions", ["ready"]), 503: statusBody("Loading, or shutting down", ["loading", "draining"]) },
      },
    },
    async (_request, reply) => {
      const phase = app.serving.phase;
      return reply.code(phase === "ready" ? 200 : 503).send({ status: phase });
    },
  );
};
