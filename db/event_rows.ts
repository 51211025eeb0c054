/**
 * How an event's data is kept in its `events` row. Log lines go to `log_text` as one text,
 * joined by "\n", and `data` holds only `{stream, count}` (migration 0007); every other
 * event, and a log event whose lines cannot be joined without loss, is JSON in `data`.
 */
import type { JobEvent, LogData } from "../jobs/events.ts";

/** The `data` and `log_text` values of an event's row. */
export function encodeEvent(event: JobEvent): [data: string, logText: string | null] {
  if (event.type !== "log") return [JSON.stringify(event.data), null];
  const d = event.data;
  if ("text" in d) return [JSON.stringify({ stream: d.stream, count: d.count }), d.text];
  // Lines sent as an array (a remote worker's) are joined too, unless a line holds a "\n"
  // (splitting would make two of it) or there is none (an empty text is one empty line).
  if (d.lines.length === 0 || d.lines.some((l) => l.includes("\n"))) {
    return [JSON.stringify(d), null];
  }
  return [JSON.stringify({ stream: d.stream, count: d.lines.length }), d.lines.join("\n")];
}

/** A log event's data as the API shows it, from its row: `{stream, lines}`. */
export function decodeLogLines(
  data: string,
  logText: string | null,
): LogData & { lines: string[] } {
  const parsed = JSON.parse(data);
  return logText === null ? parsed : { stream: parsed.stream, lines: logText.split("\n") };
}

/** About what `events` add to their rows, in bytes: their log text, and a little each. */
export function payloadBytes(events: readonly { event: JobEvent }[]): number {
  let bytes = 0;
  for (const { event } of events) {
    bytes += 128;
    if (event.type !== "log") continue;
    const d = event.data;
    if ("text" in d) bytes += d.text.length;
    else for (const line of d.lines) bytes += line.length + 1;
  }
  return bytes;
}
