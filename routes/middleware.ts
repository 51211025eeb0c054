/** Middleware factories: each returns a named handler. */
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createHash, timingSafeEqual } from "node:crypto";
import { hostPart, isLoopback } from "../config.ts";
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
        /^Bearer\s+\S/i.test(header ?? "")
          ? "the bearer token is not valid"
          : `missing bearer token: send Authorization: Bearer <${names}>`,
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
