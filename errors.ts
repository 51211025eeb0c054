/** Typed errors that carry an HTTP status; one `onError` maps them to the error envelope. */
export class AppError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 408 | 409 | 413 | 415 | 421 | 422 | 503,
    message: string,
    readonly details: unknown[] = [],
  ) {
    super(message);
    this.name = new.target.name;
  }
}
export class BadRequestError extends AppError {
  constructor(message: string, details: unknown[] = []) {
    super(400, message, details);
  }
}
export class ValidationError extends AppError {
  constructor(message: string, details: unknown[] = []) {
    super(422, message, details);
  }
}
export class NotFoundError extends AppError {
  constructor(message: string, details: unknown[] = []) {
    super(404, message, details);
  }
}
export class ConflictError extends AppError {
  constructor(message: string, details: unknown[] = []) {
    super(409, message, details);
  }
}
export class UnavailableError extends AppError {
  constructor(message: string) {
    super(503, message);
  }
}
