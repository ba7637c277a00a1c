import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import fp from "fastify-plugin";

const CLIENT_ID = /^[\w.:-]{1,128}$/;

/** A client's own X-Request-Id when it is a plausible id, otherwise a fresh UUID; it tags every log line of the request. */
export function requestId(req: IncomingMessage): string {
  const given = req.headers["x-request-id"];
  return typeof given === "string" && CLIENT_ID.test(given) ? given : randomUUID();
}

/** Returns the request id in X-Request-Id, so a client can find its request in the logs. */
export const requestIdPlugin = fp(
  async (app) => {
    app.addHook("onRequest", async (request, reply) => {
      reply.header("x-request-id", request.id);
    });
  },
  { name: "request-id" },
);
