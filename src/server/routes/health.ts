import type { FastifyPluginAsync } from "fastify";
import { errorResponses } from "../errors.js";

const statusBody = (description: string, values: readonly string[]) =>
  ({ description, type: "object", required: ["status"], properties: { status: { type: "string", enum: values } } }) as const;

const readyBody = (description: string, values: readonly string[]) => {
  const body = statusBody(description, values);
  return { ...body, properties: { ...body.properties, library: librarySync } };
};

const librarySync = {
  description: "A library on object storage only: whether this replica serves the manifest the store holds",
  type: "object",
  required: ["in_sync", "etag"],
  properties: {
    in_sync: { type: "boolean" },
    etag: { type: ["string", "null"], description: "Tag of the manifest served" },
    error: { type: "string", description: "Why not in sync: the store cannot be read, or what it names cannot be loaded (the previous manifest is still served)" },
  },
} as const;

/** GET /health (the process answers) and GET /ready (the library is loaded and the server is not shutting down). */
export const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    "/health",
    { config: { answersWhileStopping: true }, schema: { summary: "Liveness", operationId: "getHealth", tags: ["operations"], response: { 200: statusBody("The process is up", ["ok"]), ...errorResponses() } } },
    async () => ({ status: "ok" }),
  );

  app.get(
    "/ready",
    {
      config: { answersWhileStopping: true },
      schema: {
        summary: "Readiness",
        operationId: "getReady",
        description:
          "200 once the model library is loaded; 503 while it loads and once shutdown has begun: `draining` while every request is still " +
          "served (--drain-seconds after SIGTERM), then `stopping` while the requests already received are answered. A replica whose library is on object storage " +
          "says whether it serves the store's current manifest; one that does not is still ready, and serves the manifest it had.",
        tags: ["operations"],
        response: { ...errorResponses(), 200: readyBody("Serving predictions", ["ready"]), 503: readyBody("Loading, or shutting down", ["loading", "draining", "stopping"]) },
      },
    },
    async (_request, reply) => {
      const phase = app.serving.phase;
      const library = app.serving.runtime?.library;
      const sync = library?.shared ? library.sync : undefined;
      const detail = sync && { library: { in_sync: sync.inSync, etag: sync.etag ?? null, ...(sync.error === undefined ? {} : { error: sync.error }) } };
      return reply.code(phase === "ready" ? 200 : 503).send({ status: phase, ...detail });
    },
  );
};
