/** Middleware factories: each returns a named handler. */
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createHash, timingSafeEqual } from "node:crypto";
import { hostPart, isLoopback } from "../config.ts";
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

/**
 * On a loopback bind, answers only Host names that mean this machine (plus `allowed`): a
 * page on attacker.example whose name was rebound to 127.0.0.1 sends `Host:
 * attacker.example`, and must not read or drive the API.
 */
export function hostCheck(allowed: readonly string[]): MiddlewareHandler {
  const extra = new Set(allowed.map(hostPart));
  return async function hostCheck(c, next) {
    const host = c.req.header("host") ?? new URL(c.req.url).host;
    const name = hostPart(host);
    if (isLoopback(name) || extra.has(name)) return await next();
    throw new AppError(
      421,
      `this server listens on a loopback address and answers only localhost, 127.x.y.z and ` +
        `[::1], not Host ${JSON.stringify(host)}; add the name to ALLOWED_HOSTS to serve it`,
    );
  };
}

const STATE_CHANGING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * Refuses state-changing requests sent by a web page of another origin. Browsers send a
 * POST without a body, or with a text/plain one, cross-site without asking first (no
 * preflight), so CORS alone does not stop a page from starting jobs. Requests without an
 * Origin (curl, scripts) are not from a browser page and pass. hono's `csrf` is not used:
 * it also refuses an Origin-less POST without a Content-Type, which is how curl posts.
 */
export function originCheck(corsOrigins: string | undefined): MiddlewareHandler {
  const listed = new Set(corsOrigins?.split(",") ?? []);
  return async function originCheck(c, next) {
    const origin = c.req.header("origin");
    if (
      origin === undefined || !STATE_CHANGING.has(c.req.method) || corsOrigins === "*" ||
      listed.has(origin) || sameHost(origin, c.req.header("host") ?? new URL(c.req.url).host)
    ) return await next();
    throw new AppError(
      403,
      `a web page from ${origin} may not call ${c.req.method} here: ` +
        `add the origin to CORS_ORIGINS (comma-separated) to allow it`,
    );
  };
}

/** A page served by this very server (any scheme: a TLS proxy may sit in front). */
function sameHost(origin: string, host: string): boolean {
  try {
    return new URL(origin).host === host.toLowerCase();
  } catch {
    return false; // "null" (sandboxed frames, file: pages) or garbage
  }
}
