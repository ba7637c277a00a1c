/**
 * Every failure the server raises on purpose is a ServingError: a `kind` saying what went wrong in
 * the server's own terms, and a `code`, the stable machine-readable name clients see. Nothing
 * below the HTTP layer knows about HTTP: server/errors.ts maps each kind to its status in one
 * table, as the edge's only business.
 */
export const ERROR_KINDS = [
  /** The request itself is wrong: a field, a value, a body that is not what the API takes. */
  "invalid_request",
  "unauthorized",
  "not_found",
  /** The path exists but not with this method. */
  "method_not_allowed",
  /** The request did not arrive completely in time. */
  "request_timeout",
  /** The request contradicts the library's state (e.g. deleting an adapter a fusion uses). */
  "conflict",
  "too_large",
  "uri_too_long",
  "unsupported_media_type",
  "expectation_failed",
  /** A model file the user brought cannot be served: missing, malformed, incompatible or unsupported. */
  "unloadable_model",
  /** More work is waiting than the server accepts; retry later. */
  "overloaded",
  "headers_too_large",
  /** The server cannot answer now (loading, shutting down, no answer in time, engine failed); retry. */
  "unavailable",
  "internal",
] as const;

export type ErrorKind = (typeof ERROR_KINDS)[number];

export class ServingError extends Error {
  constructor(
    readonly kind: ErrorKind,
    readonly code: string,
    message: string,
    /** When the client may retry; only for kinds that are worth retrying. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export const MODEL_LOAD_ERROR_CODES = ["missing_file", "malformed_file", "shape_mismatch", "non_finite_weights", "unsupported_config", "unknown_adapter", "too_costly"] as const;

export type ModelLoadErrorCode = (typeof MODEL_LOAD_ERROR_CODES)[number];

export class ModelLoadError extends ServingError {
  constructor(code: ModelLoadErrorCode, message: string) {
    super("unloadable_model", code, message);
  }
}

export class NotFoundError extends ServingError {
  constructor(what: string, name: string) {
    super("not_found", `${what}_not_found`, `${what} '${name}' does not exist`);
  }
}

export class BadRequestError extends ServingError {
  constructor(code: string, message: string) {
    super("invalid_request", code, message);
  }
}

export class PayloadTooLargeError extends ServingError {
  constructor(message: string) {
    super("too_large", "payload_too_large", message);
  }
}

export class ConflictError extends ServingError {
  constructor(code: string, message: string) {
    super("conflict", code, message);
  }
}

export class OverloadedError extends ServingError {
  constructor(message: string, retryAfterSeconds: number) {
    super("overloaded", "overloaded", message, retryAfterSeconds);
  }
}

export class TimeoutError extends ServingError {
  constructor(message: string) {
    super("unavailable", "timeout", message, 1);
  }
}

export class UnavailableError extends ServingError {
  constructor(code: string, message: string) {
    super("unavailable", code, message, 1);
  }
}

export class InternalError extends ServingError {
  constructor() {
    super("internal", "internal_error", "an unexpected error occurred; it has been logged");
  }
}
