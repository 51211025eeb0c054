/** The `Range` header of a download (RFC 9110 §14): one range of bytes, or none. */

/** Inclusive bounds within a file of `total` bytes, or "unsatisfiable" (HTTP 416). */
export type RangeRequest = { start: number; end: number } | "unsatisfiable" | null;

/**
 * Parses `header` against a file of `total` bytes. Null means "send the whole file": no
 * header, a unit other than bytes, several ranges, or a malformed one (the RFC lets a server
 * ignore a Range it does not take, and a whole 200 is always a correct answer).
 */
export function parseRange(header: string | undefined, total: number): RangeRequest {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? "");
  if (!m || (m[1] === "" && m[2] === "")) return null;
  if (m[1] === "") {
    // A suffix: the last n bytes. bytes=-0 asks for nothing, which no file can give.
    const n = Number(m[2]);
    if (n === 0 || total === 0) return "unsatisfiable";
    return { start: Math.max(0, total - n), end: total - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? Infinity : Number(m[2]);
  if (!Number.isSafeInteger(start) || end < start) return null;
  if (start >= total) return "unsatisfiable";
  return { start, end: Math.min(end, total - 1) };
}

/** True when an If-None-Match header names `etag` (or is `*`); weak tags compare too. */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(",").map((t) => t.trim().replace(/^W\//, "")).some((t) =>
    t === "*" || t === etag
  );
}
