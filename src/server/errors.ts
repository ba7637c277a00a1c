import fp from "fastify-plugin";
import type { FastifyError } from "fastify";
import { ServingError } from "../errors.js";

/** The body of every error answer. */
export const errorSchema = {
  $id: "Error",
  type: "object",
  required: ["error", "message"],
  properties: {
    error: { type: "string", description: "Stable machine-readable code, e.g. invalid_request, route_not_found, overloaded" },
    message: { type: "string", description: "What went wrong, for people" },
  },
} as const;

/**
 * The one place where failures become HTTP answers: the server's own ServingErrors carry their
 * status and code; fastify's own errors (validation, body parsing, body size) get a code and a
 * message that names the limit; anything else is a 500 whose details stay in the log.
 */
export const errorsPlugin = fp<{ maxBodyBytes: number }>(
  async (app, { maxBodyBytes }) => {
    app.addSchema(errorSchema);

    app.setErrorHandler((err: FastifyError | ServingError, request, reply) => {
      const { status, code, message, headers } = classify(err, maxBodyBytes);
      if (status >= 500) request.log.error({ err }, "request failed");
      else request.log.info({ code, message }, "request refused");
      app.metrics.rejected.inc({ reason: code });
      return reply.code(status).headers(headers).send({ error: code, message });
    });

    app.setNotFoundHandler((request, reply) => {
      app.metrics.rejected.inc({ reason: "not_found" });
      return reply.code(404).send({ error: "not_found", message: `no endpoint ${request.method} ${request.url}` });
    });
  },
  { name: "errors", dependencies: ["metrics"] },
);

interface Answer {
  status: number;
  code: string;
  message: string;
  headers: Record<string, string>;
}

function classify(err: FastifyError | ServingError, maxBodyBytes: number): Answer {
  if (err instanceof ServingError) return { status: err.status, code: err.code, message: err.message, headers: err.headers };
  const answer = (status: number, code: string, message: string): Answer => ({ status, code, message, headers: {} });
  if (err.validation) return answer(400, "invalid_request", err.message);
  switch (err.code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return answer(400, "malformed_json", "the request body is not valid JSON");
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return answer(400, "malformed_json", "the request body is empty; send a JSON object");
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return answer(413, "payload_too_large", `the request body exceeds ${maxBodyBytes} bytes (--max-body-bytes)`);
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return answer(415, "unsupported_media_type", "send the request body as application/json");
  }
  const status = err.statusCode ?? 500;
  if (status < 500) return answer(status, "bad_request", err.message);
  return answer(500, "internal_error", "an unexpected error occurred; it has been logged");
}
