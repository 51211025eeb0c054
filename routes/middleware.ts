/** Middleware factories: each returns a named handler. */
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createHash, timingSafeEqual } from "node:crypto";
import { AppError, UnavailableError } from "../errors.ts";

/**
 * Requires `Authorization: Bearer <token>` when a token is configured. Paths in `open` need
 * none; an entry ending in "/*" opens every path under it.
 */
export function bearerAuth(token: string | undefined, open: string[]): MiddlewareHandler {
  const gate = tokenGate([token], "API_TOKEN");
  return async function bearerAuth(c, next) {
    const path = c.req.path;
    const isOpen = open.some((p) =>
      p.endsWith("/*") ? path.startsWith(p.slice(0, -1)) : p === path
    );
    if (isOpen) return await next();
    return await gate(c, next);
  };
}

/**
 * Requires a bearer token equal to one of `tokens` (unset ones are ignored); open when none
 * is set. `names` tells a client which variable's value to send.
 */
export function tokenGate(tokens: (string | undefined)[], names: string): MiddlewareHandler {
  const expected = tokens.filter((t): t is string => !!t).map(digest);
  return async function tokenGate(c, next) {
    if (expected.length === 0) return await next();
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header);
    // Comparing digests keeps the time constant whatever the length of the guess; every
    // token is compared, so the time does not tell which one was close either.
    const given = match ? digest(match[1].trim()) : null;
    const ok = expected.reduce(
      (hit, e) => (given !== null && timingSafeEqual(given, e)) || hit,
      false,
    );
    if (!ok) {
      c.header("WWW-Authenticate", 'Bearer realm="trainer"');
      throw new AppError(
        401,
        match
          ? "the bearer token is not valid"
          : `missing bearer token: send Authorization: Bearer <${names}>`,
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
