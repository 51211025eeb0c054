/** Middleware factories: each returns a named handler. */
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createHash, timingSafeEqual } from "node:crypto";
import { AppError, UnavailableError } from "../errors.ts";

/** Requires `Authorization: Bearer <token>` when a token is configured. */
export function bearerAuth(token: string | undefined, open: string[]): MiddlewareHandler {
  return async function bearerAuth(c, next) {
    if (!token || open.includes(c.req.path)) return await next();
    const header = c.req.header("authorization");
    if (!hasToken(header, token)) {
      c.header("WWW-Authenticate", 'Bearer realm="trainer"');
      throw new AppError(
        401,
        /^Bearer\s+\S/i.test(header ?? "")
          ? "the bearer token is not valid"
          : "missing bearer token: send Authorization: Bearer <API_TOKEN>",
      );
    }
    await next();
  };
}

/**
 * True when `header` carries the bearer `token` (always true when no token is configured).
 * Comparing digests keeps the time constant whatever the length of the guess.
 */
export function hasToken(header: string | undefined, token: string | undefined): boolean {
  if (!token) return true;
  const match = /^Bearer\s+(.+)$/i.exec(header ?? "");
  return !!match && timingSafeEqual(digest(match[1].trim()), digest(token));
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

declare module "hono" {
  interface ContextVariableMap {
    /** Rejects with 408 when the request body has not arrived in time (see limitBody). */
    bodyDeadline: Promise<never>;
  }
}

/**
 * Refuses bodies over `maxBytes` with 413, whether or not Content-Length is sent, and bodies
 * that take longer than `deadlineMs` to arrive with 408: a client that dribbles its body a
 * byte at a time would otherwise hold a request for as long as it likes. The deadline is a
 * promise that readers of the body race (routes/input.ts); the body stream is left as it is.
 */
export function limitBody(maxBytes: number, deadlineMs: number): MiddlewareHandler {
  const size = bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new AppError(413, `request body is larger than ${maxBytes / 1024} KiB`);
    },
  });
  return async function limitBody(c, next) {
    if (!c.req.raw.body) return await size(c, next);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        c.header("Connection", "close");
        reject(
          new AppError(
            408,
            `the request body did not arrive within ${deadlineMs / 1000} s; ` +
              `send it at once, with a correct Content-Length`,
          ),
        );
      }, deadlineMs);
    });
    expired.catch(() => {});
    c.set("bodyDeadline", expired);
    try {
      // Without Content-Length, bodyLimit reads the whole body before the route runs: that
      // read is raced here, and the route's own read in readJson.
      let entered!: () => void;
      const inRoute = new Promise<void>((resolve) => entered = resolve);
      const run = size(c, async () => {
        entered();
        await next();
      });
      run.catch(() => {});
      await Promise.race([inRoute, run, expired]);
      return await run;
    } finally {
      clearTimeout(timer);
    }
  };
}
