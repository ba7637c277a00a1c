import { type ErrorKind, ServingError } from "../errors.js";

/** The one place an error's HTTP status is decided: by its kind. */
export const STATUS_BY_KIND: Readonly<Record<ErrorKind, number>> = {
  invalid_request: 400,
  unauthorized: 401,
  not_found: 404,
  method_not_allowed: 405,
  request_timeout: 408,
  conflict: 409,
  too_large: 413,
  uri_too_long: 414,
  unsupported_media_type: 415,
  expectation_failed: 417,
  unloadable_model: 422,
  overloaded: 429,
  headers_too_large: 431,
  internal: 500,
  unavailable: 503,
};

/** The status of any error: a ServingError's by its kind, anything else is a 500. */
export function statusOf(err: unknown): number {
  return err instanceof ServingError ? STATUS_BY_KIND[err.kind] : 500;
}

/** The headers an error answer carries besides its body: when to retry, which methods a path has. */
export function errorHeaders(error: ServingError): Record<string, string> {
  const headers: Record<string, string> = {};
  if (error.retryAfterSeconds !== undefined) headers["retry-after"] = String(error.retryAfterSeconds);
  if (error instanceof MethodNotAllowedError) headers.allow = error.allow.join(", ");
  return headers;
}

// Failures only HTTP has: raised by the server's own plugins and Node's HTTP parser, never below.

export class UnauthorizedError extends ServingError {
  constructor() {
    super("unauthorized", "unauthorized", "a valid 'Authorization: Bearer <token>' header is required");
  }
}

export class UnsupportedMediaTypeError extends ServingError {
  constructor(message: string) {
    super("unsupported_media_type", "unsupported_media_type", message);
  }
}

/** The path exists, but not with this method: `allow` lists the methods it has. */
export class MethodNotAllowedError extends ServingError {
  constructor(
    method: string,
    path: string,
    readonly allow: readonly string[],
  ) {
    super("method_not_allowed", "method_not_allowed", `${path} does not answer ${method}; it answers ${allow.join(", ")}`);
  }
}

/** The request never became a request: refused while its bytes were read, before any route saw it. */
export class MalformedRequestError extends ServingError {
  constructor(code: "malformed_request" | "bad_url" | "invalid_content_length", message: string) {
    super("invalid_request", code, message);
  }
}

export class RequestTimeoutError extends ServingError {
  constructor() {
    super("request_timeout", "request_timeout", "the request did not arrive completely in time; the connection is closed");
  }
}

export class UriTooLongError extends ServingError {
  constructor(message: string) {
    super("uri_too_long", "uri_too_long", message);
  }
}

export class HeadersTooLargeError extends ServingError {
  constructor(limitBytes: number) {
    super("headers_too_large", "headers_too_large", `the request line and headers exceed ${limitBytes} bytes`);
  }
}

export class ExpectationFailedError extends ServingError {
  constructor(expect: string | undefined) {
    super("expectation_failed", "expectation_failed", `Expect '${expect}' is not supported (only 100-continue)`);
  }
}
