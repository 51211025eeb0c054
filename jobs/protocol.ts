/**
 * The `@@trainer {json}` protocol: parses one message a script printed. Scripts are not
 * trusted, so a message is bounded before it is parsed and made well-formed after: what it
 * yields crosses the supervisor thread by structured clone and is stored as UTF-8 text.
 */
import { z } from "zod";

export const PROTOCOL_PREFIX = "@@trainer ";

/**
 * Deepest nesting of arrays and objects accepted. Real metrics are a level or two deep; a
 * line nested 5,000 levels overflowed the structured clone across the thread and wedged
 * the job. 64 is far above any real use and far below any stack limit on the path.
 */
export const MAX_JSON_DEPTH = 64;

const Metrics = z.record(z.string(), z.unknown());
export const ProtocolMessage = z.discriminatedUnion("event", [
  z.object({
    event: z.literal("progress"),
    step: z.number().nullish(),
    total: z.number().nullish(),
    message: z.string().nullish(),
    metrics: Metrics.nullish(),
  }),
  z.object({ event: z.literal("metrics"), metrics: Metrics }),
  z.object({ event: z.literal("artifact"), path: z.string().min(1) }),
  z.object({ event: z.literal("error"), reason: z.string().nullish(), message: z.string() }),
]);
export type ProtocolMessage = z.infer<typeof ProtocolMessage>;

/** A parsed message, or why the line is malformed. */
export type Parsed = { ok: true; message: ProtocolMessage } | { ok: false; problem: string };

/** Parses the JSON after the prefix. Never throws. */
export function parseProtocol(text: string): Parsed {
  if (nestedDeeperThan(text, MAX_JSON_DEPTH)) {
    return { ok: false, problem: `nested deeper than ${MAX_JSON_DEPTH} levels` };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, problem: "not valid JSON" };
  }
  // A `\ud800` escape decodes to a lone surrogate, which is not text: it cannot be stored as
  // UTF-8 and strict JSON readers reject it. The scan is cheap; the walk runs only when needed.
  if (/\\u[dD][89a-fA-F]/.test(text)) json = wellFormed(json);
  const parsed = ProtocolMessage.safeParse(json);
  if (parsed.success) return { ok: true, message: parsed.data };
  return {
    ok: false,
    problem: parsed.error.issues.map((i) => `${i.path.join(".") || "message"}: ${i.message}`)
      .join("; "),
  };
}

/**
 * True when arrays and objects in `text` nest deeper than `limit`. Brackets inside strings do
 * not count. Checked before JSON.parse, so a hostile line costs one pass over its characters.
 */
export function nestedDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** `value` with every string and key made well-formed (lone surrogates become U+FFFD). */
export function wellFormed(value: unknown): unknown {
  if (typeof value === "string") return value.toWellFormed();
  if (Array.isArray(value)) return value.map(wellFormed);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k.toWellFormed(), wellFormed(v)]),
    );
  }
  return value;
}
