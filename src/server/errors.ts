import { type IncomingMessage, maxHeaderSize, type ServerResponse, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import fp from "fastify-plugin";
import type { ConnectionError, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { BadRequestError, InternalError, PayloadTooLargeError, ServingError, UnavailableError } from "../errors.js";
import {
  errorHeaders,
  ExpectationFailedError,
  HeadersTooLargeError,
  MalformedRequestError,
  MethodNotAllowedError,
  RequestTimeoutError,
  statusOf,
  UnsupportedMediaTypeError,
  UriTooLongError,
} from "./status.js";

/** The body of every error answer. */
export const errorSchema = {
  $id: "Error",
  type: "object",
  required: ["error", "message"],
  additionalProperties: false,
  properties: {
    error: { type: "string", description: "Stable machine-readable code, e.g. invalid_request, route_not_found, overloaded" },
    message: { type: "string", description: "What went wrong, for people" },
  },
} as const;

/** Error codes by HTTP status, as one operation can answer them. */
export type ErrorCodes = Readonly<Partial<Record<number, readonly string[]>>>;

/** Any operation but the probes: a request that arrives once the drain is over and the server stops is refused. */
export const DRAINING: ErrorCodes = { 503: ["shutting_down"] };

/** Any operation whose path has a parameter: refused by the router before the route runs. */
export const PATH_ERRORS: ErrorCodes = { 400: ["bad_url"], 414: ["uri_too_long"] };

/** Any operation that reads a JSON body. */
export const BODY_ERRORS: ErrorCodes = {
  400: ["malformed_json", "invalid_request", "invalid_content_length"],
  413: ["payload_too_large"],
  415: ["unsupported_media_type"],
};

/**
 * The error answers of one operation, for its route schema's `response`: every status it can
 * answer with the codes that status carries. Every operation can also answer 500 internal_error,
 * and, to a request that does not arrive in time, carries an `Expect` other than 100-continue, or
 * whose headers are too large, 408, 417 and 431.
 */
export function errorResponses(...groups: ErrorCodes[]): Record<number, { description: string; content: { "application/json": { schema: { $ref: string } } } }> {
  const codes = new Map<number, Set<string>>();
  for (const group of [...groups, { 408: ["request_timeout"], 417: ["expectation_failed"], 431: ["headers_too_large"], 500: ["internal_error"] }]) {
    for (const [status, list] of Object.entries(group)) {
      const set = codes.get(Number(status)) ?? new Set<string>();
      for (const code of list ?? []) set.add(code);
      codes.set(Number(status), set);
    }
  }
  return Object.fromEntries(
    // Always JSON, also for an operation that otherwise produces text (/metrics).
    [...codes].sort(([a], [b]) => a - b).map(([status, set]) => [
      status,
      { description: `${STATUS_CODES[status]}: ${[...set].join(", ")}`, content: { "application/json": { schema: { $ref: "Error#" } } } },
    ]),
  );
}

export interface Limits {
  readonly maxBodyBytes: number;
}

/**
 * The one place where failures become HTTP answers: the server's own ServingErrors carry their
 * status and code; fastify's, the multipart parser's and Node's HTTP parser's errors are mapped
 * to ServingErrors here; anything else is a 500 whose details stay in the log.
 */
export const errorsPlugin = fp<Limits>(
  async (app, limits) => {
    app.addSchema(errorSchema);

    // A request no route serves may fail while its body is read (QUERY without Content-Type, a
    // body of an unknown type); what matters to the client is that nothing serves it.
    app.setErrorHandler((err: FastifyError | ServingError, request, reply) =>
      answer(app, request, reply, request.is404 ? notServed(app, request) : toServingError(err, limits), err),
    );

    app.setNotFoundHandler((request, reply) => answer(app, request, reply, notServed(app, request)));

    // fastify's own answer to requests that arrive while it closes has a body of its own shape,
    // so return503OnClosing is off (transportErrorOptions) and this hook answers them instead.
    // The probes keep answering: /ready has to say so to keep the instance out of rotation.
    app.addHook("onRequest", async (request) => {
      if (app.serving.phase === "stopping" && !request.routeOptions.config.answersWhileStopping) {
        throw new UnavailableError("shutting_down", "the server is shutting down; retry on another instance");
      }
    });
  },
  { name: "errors", dependencies: ["metrics", "serving"] },
);

/** How an error answer's body looks: this API's by default; the Open Inference Protocol has its own. */
export type ErrorBody = (error: ServingError) => object;

const errorBody: ErrorBody = (error) => ({ error: error.code, message: error.message });

/** Where the Open Inference Protocol is served (server/oip/), and its error body. */
export const OIP_PREFIX = "/v2";
export const oipErrorBody: ErrorBody = (error) => ({ error: error.message });

/** The error body of the API a path belongs to, for answers given before any route is known. */
function errorBodyFor(url: string): ErrorBody {
  return url === OIP_PREFIX || url.startsWith(`${OIP_PREFIX}/`) ? oipErrorBody : errorBody;
}

/** Answers a failure: logged by its status, counted by its code, with its headers and the body `shape` gives. */
export function answer(app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, error: ServingError, cause: unknown = error, shape: ErrorBody = errorBody) {
  const status = statusOf(error);
  if (status === 500) request.log.error({ err: cause }, "request failed");
  else if (status >= 500) request.log.warn({ code: error.code, message: error.message }, "request not answered");
  else request.log.info({ code: error.code, message: error.message }, "request refused");
  app.metrics.rejected.inc({ reason: error.code });
  return reply.code(status).headers(errorHeaders(error)).send(shape(error));
}

/** 405 with Allow when the path exists with other methods, else 404. */
export function notServed(app: FastifyInstance, request: FastifyRequest): ServingError {
  const path = request.url.split("?")[0];
  const allow = allowedMethods(app, path);
  return allow.length > 0 ? new MethodNotAllowedError(request.method, path, allow) : new ServingError("not_found", "not_found", `no endpoint ${request.method} ${path}`);
}

/** Every method the router serves at this concrete path (HEAD wherever GET is). */
function allowedMethods(app: FastifyInstance, path: string): string[] {
  return ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"].filter((method) => app.findRoute({ method, url: path }) !== null);
}

/** ajv's message for an unknown field does not say which field it is. */
function validationMessage(err: FastifyError): string {
  const extra = err.validation?.find((v) => v.keyword === "additionalProperties")?.params.additionalProperty;
  return typeof extra === "string" ? `${err.message}: unknown field '${extra}'` : err.message;
}

declare module "fastify" {
  interface FastifyContextConfig {
    /** Answered normally once the server stops, rather than refused with 503 shutting_down. */
    answersWhileStopping?: boolean;
  }
}

export function toServingError(err: FastifyError | ServingError, { maxBodyBytes }: Limits): ServingError {
  if (err instanceof ServingError) return err;
  if (err.validation) return new BadRequestError("invalid_request", validationMessage(err));
  switch (err.code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new BadRequestError("malformed_json", "the request body is not valid JSON");
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new BadRequestError("malformed_json", "the request body is empty; send a JSON object");
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new PayloadTooLargeError(`the request body exceeds ${maxBodyBytes} bytes (--max-body-bytes)`);
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new UnsupportedMediaTypeError("send the request body as application/json (admin uploads: multipart/form-data)");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new MalformedRequestError("invalid_content_length", "the request body does not match its Content-Length");
    case "FST_ERR_BAD_URL":
      return new MalformedRequestError("bad_url", "the URL path is not valid percent-encoded UTF-8");
    case "FST_ERR_MAX_PARAM_LENGTH":
      return new UriTooLongError("a path parameter exceeds 100 characters");
    case "FST_FILES_LIMIT":
    case "FST_PARTS_LIMIT":
    case "FST_FIELDS_LIMIT":
      return new PayloadTooLargeError("the upload has more parts than an AdapterHub save directory has files");
    case "FST_PROTO_VIOLATION":
      return new BadRequestError("malformed_upload", "an upload part is named after an object prototype property");
  }
  if (err.statusCode !== undefined && err.statusCode < 500) return new BadRequestError("bad_request", err.message);
  return new InternalError();
}

/**
 * The server's answers to what fastify refuses before it has a route for a request (a malformed
 * URL, a parameter over maxParamLength) and to what Node's HTTP parser refuses before fastify
 * sees a request at all (headers over the limit, an invalid Content-Length or method, a request
 * that did not arrive in time): the same error body as every other answer. Options of `Fastify()`.
 */
export function transportErrorOptions(limits: Limits) {
  return {
    return503OnClosing: false,
    frameworkErrors: (err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      const error = toServingError(err, limits);
      request.log.info({ code: error.code, message: error.message }, "request refused");
      // No hook runs for these requests, so the request id is set here.
      void reply.code(statusOf(error)).headers({ ...errorHeaders(error), "x-request-id": request.id }).send(errorBodyFor(request.url)(error));
    },
    clientErrorHandler(this: FastifyInstance, err: ConnectionError, socket: Socket) {
      // A reset connection has nobody left to answer.
      if (err.code === "ECONNRESET" || socket.destroyed) return;
      const error = connectionError(this, err);
      this.log.info({ code: error.code, parserCode: err.code }, "request refused");
      this.metrics.rejected.inc({ reason: error.code });
      if (!socket.writable) return void socket.destroy();
      const body = JSON.stringify({ error: error.code, message: error.message });
      const headers = { ...errorHeaders(error), "content-type": "application/json; charset=utf-8", "content-length": String(Buffer.byteLength(body)), connection: "close" };
      const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("");
      socket.end(`HTTP/1.1 ${statusOf(error)} ${STATUS_CODES[statusOf(error)]}\r\n${head}\r\n${body}`, () => socket.destroy());
    },
  };
}

/**
 * JSON bodies: a `__proto__` or `constructor` key is refused by name (no field of this API is
 * named so, and nothing downstream should reach an object's prototype through one); the body
 * itself is valid JSON, so it is not called malformed.
 */
export function parseJsonBody(body: string): unknown {
  if (body.length === 0) throw new BadRequestError("malformed_json", "the request body is empty; send a JSON object");
  let forbidden: string | undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body, function (key, value) {
      if (key === "__proto__" || key === "constructor") forbidden ??= key;
      return value;
    });
  } catch {
    throw new BadRequestError("malformed_json", "the request body is not valid JSON");
  }
  if (forbidden !== undefined) throw new BadRequestError("invalid_request", `the body has a '${forbidden}' key; no field of this API is named so`);
  return parsed;
}

/**
 * What Node's HTTP server answers itself, outside fastify: an `Expect` other than 100-continue
 * (417, with no body), and CONNECT (the socket closed unanswered). Both get the error body here.
 */
export function answerOutsideFastify(app: FastifyInstance): void {
  const body = (error: ServingError) => JSON.stringify({ error: error.code, message: error.message });
  app.server.on("checkExpectation", (request: IncomingMessage, response: ServerResponse) => {
    const error = new ExpectationFailedError(request.headers.expect);
    app.log.info({ code: error.code }, "request refused");
    app.metrics.rejected.inc({ reason: error.code });
    const text = body(error);
    response.writeHead(statusOf(error), { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text), connection: "close" }).end(text);
  });
  app.server.on("connect", (_request: IncomingMessage, socket: Duplex) => {
    const error = new MalformedRequestError("malformed_request", "CONNECT is not answered: this server is no proxy");
    app.log.info({ code: error.code }, "request refused");
    app.metrics.rejected.inc({ reason: error.code });
    const text = body(error);
    const head = `HTTP/1.1 ${statusOf(error)} ${STATUS_CODES[statusOf(error)]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n`;
    socket.end(`${head}${text}`, () => socket.destroy());
  });
}

function connectionError(app: FastifyInstance, err: ConnectionError): ServingError {
  switch (err.code) {
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return new RequestTimeoutError();
    case "HPE_HEADER_OVERFLOW":
      return new HeadersTooLargeError(maxHeaderSize);
    case "HPE_INVALID_CONTENT_LENGTH":
    case "HPE_UNEXPECTED_CONTENT_LENGTH":
      return new MalformedRequestError("invalid_content_length", "the Content-Length header is invalid, repeated, or sent with Transfer-Encoding");
    case "HPE_INVALID_METHOD": {
      // Node's parser knows no such method; the request line still names the path.
      const raw: unknown = err.rawPacket;
      const [method, path] = (Buffer.isBuffer(raw) ? raw.toString("latin1").split("\r\n", 1)[0] : "").split(" ");
      const allow = path?.startsWith("/") ? allowedMethods(app, path.split("?")[0]) : [];
      if (allow.length > 0) return new MethodNotAllowedError(method, path.split("?")[0], allow);
      break;
    }
  }
  return new MalformedRequestError("malformed_request", `the request is not valid HTTP/1.1 (${err.code ?? err.message})`);
}
