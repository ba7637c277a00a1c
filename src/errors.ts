/**
 * Every error the server raises on purpose is a ServingError. Its `status` is the HTTP status the
 * error handler answers with, and `code` is a stable machine-readable name for clients, so the
 * mapping from failure to HTTP lives here and nowhere else.
 */
export class ServingError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Record<string, string>;

  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

export const MODEL_LOAD_ERROR_CODES = ["missing_file", "malformed_file", "shape_mismatch", "non_finite_weights", "unsupported_config", "unknown_adapter"] as const;

/** A model file the user brought cannot be served: missing, malformed, incompatible or unsupported. */
export class ModelLoadError extends ServingError {
  constructor(code: (typeof MODEL_LOAD_ERROR_CODES)[number], message: string) {
    super(422, code, message);
  }
}

export class NotFoundError extends ServingError {
  constructor(what: string, name: string) {
    super(404, `${what}_not_found`, `${what} '${name}' does not exist`);
  }
}

export class BadRequestError extends ServingError {
  constructor(code: string, message: string) {
    super(400, code, message);
  }
}

export class PayloadTooLargeError extends ServingError {
  constructor(message: string) {
    super(413, "payload_too_large", message);
  }
}

export class ConflictError extends ServingError {
  constructor(code: string, message: string) {
    super(409, code, message);
  }
}

export class OverloadedError extends ServingError {
  constructor(message: string, retryAfterSeconds: number) {
    super(429, "overloaded", message, { "retry-after": String(retryAfterSeconds) });
  }
}

export class TimeoutError extends ServingError {
  constructor(message: string) {
    super(503, "timeout", message, { "retry-after": "1" });
  }
}

export class UnavailableError extends ServingError {
  constructor(code: string, message: string) {
    super(503, code, message, { "retry-after": "1" });
  }
}

export class UnauthorizedError extends ServingError {
  constructor() {
    super(401, "unauthorized", "a valid 'Authorization: Bearer <token>' header is required");
  }
}

export class UnsupportedMediaTypeError extends ServingError {
  constructor(message: string) {
    super(415, "unsupported_media_type", message);
  }
}

/** The path exists, but not with this method: `allow` lists the methods it has. */
export class MethodNotAllowedError extends ServingError {
  constructor(method: string, path: string, allow: readonly string[]) {
    super(405, "method_not_allowed", `${path} does not answer ${method}; it answers ${allow.join(", ")}`, { allow: allow.join(", ") });
  }
}

/** The request never became a request: refused while its bytes were read, before any route saw it. */
export class MalformedRequestError extends ServingError {
  constructor(code: "malformed_request" | "bad_url" | "invalid_content_length", message: string) {
    super(400, code, message);
  }
}

export class RequestTimeoutError extends ServingError {
  constructor() {
    super(408, "request_timeout", "the request did not arrive completely in time; the connection is closed");
  }
}

export class UriTooLongError extends ServingError {
  constructor(message: string) {
    super(414, "uri_too_long", message);
  }
}

export class HeadersTooLargeError extends ServingError {
  constructor(limitBytes: number) {
    super(431, "headers_too_large", `the request line and headers exceed ${limitBytes} bytes`);
  }
}

export class InternalError extends ServingError {
  constructor() {
    super(500, "internal_error", "an unexpected error occurred; it has been logged");
  }
}
