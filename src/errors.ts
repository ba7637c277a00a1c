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

/** A model file the user brought cannot be served: missing, malformed, incompatible or unsupported. */
export class ModelLoadError extends ServingError {
  constructor(
    code:
      | "missing_file"
      | "malformed_file"
      | "shape_mismatch"
      | "non_finite_weights"
      | "unsupported_config"
      | "unknown_adapter",
    message: string,
  ) {
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
