/** Middleware factories: each returns a named handler. */
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createHash, timingSafeEqual } from "node:crypto";
import { AppError, UnavailableError } from "../errors.ts";

/** Requires `Authorization: Bearer <token>` when a token is configured. */
export function bearerAuth(token: string | undefined, open: string[]): MiddlewareHandler {
  const expected = token ? digest(token) : null;
  return async function bearerAuth(c, next) {
    if (!expected || open.includes(c.req.path)) return await next();
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header);
    // Comparing digests keeps the time constant whatever the length of the guess.
    if (!match || !timingSafeEqual(digest(match[1].trim()), expected)) {
      c.header("WWW-Authenticate", 'Bearer realm="trainer"');
      throw new AppError(
        401,
        match
          ? "the bearer token is not valid"
          : "missing bearer token: send Authorization: Bearer <API_TOKEN>",
      );
    }
    await next();
  };
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

/** Answers 503 once the server is shutting down. */
export function shutdownGate(state: { shuttingDown: boolean }): MiddlewareHandler {
  return async function shutdownGate(_c, next) {
    if (state.shuttingDown) {
      throw new UnavailableError("the server is shutting down; retry shortly");
    }
    await next();
  };
}

/** Refuses bodies over `maxBytes` with 413, whether or not Content-Length is sent. */
export function limitBody(maxBytes: number): MiddlewareHandler {
  return bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new AppError(413, `request body is larger than ${maxBytes / 1024} KiB`);
    },
  });
}
