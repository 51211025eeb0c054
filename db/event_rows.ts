/**
 * How an event's data is kept in its `events` row. Log lines go to `log_text` as one text,
 * joined by "\n", and `data` holds only `{stream, count}` (migration 0007); every other
 * event, and a log event whose lines cannot be joined without loss, is JSON in `data`.
 */
import type { JobEvent, LogData, LogFileRange } from "../jobs/events.ts";
import { readLogRange } from "./log_files.ts";

/** The `data` and `log_text` values of an event's row. */
export function encodeEvent(event: JobEvent): [data: string, logText: string | null] {
  if (event.type !== "log") return [JSON.stringify(event.data), null];
  const d = event.data;
  if ("text" in d) return [JSON.stringify({ stream: d.stream, count: d.count }), d.text];
  // Lines in the job's log file: the row holds where they are (db/log_files.ts).
  if ("file" in d) return [JSON.stringify(d), null];
  // Lines sent as an array (a remote worker's) are joined too, unless a line holds a "\n"
  // (splitting would make two of it) or there is none (an empty text is one empty line).
  if (d.lines.length === 0 || d.lines.some((l) => l.includes("\n"))) {
    return [JSON.stringify(d), null];
  }
  return [JSON.stringify({ stream: d.stream, count: d.lines.length }), d.lines.join("\n")];
}

/**
 * A log event's data as the API shows it, from its row: `{stream, lines}`. Lines kept in a
 * log file are read from `logDir` (the database's log folder; null when it has none).
 */
export function decodeLogLines(
  data: string,
  logText: string | null,
  logDir: string | null,
): LogData & { lines: string[] } {
  const parsed = JSON.parse(data);
  const text = logText ?? logRowText(parsed, logDir);
  return text === null ? parsed : { stream: parsed.stream, lines: text.split("\n") };
}

/** The text of a log row whose lines are in a log file; null for any other row. */
export function logRowText(data: { file?: unknown; count?: unknown }, logDir: string | null) {
  if (typeof data.file !== "object" || data.file === null) return null;
  return readLogRange(logDir, data.file as LogFileRange, Number(data.count));
}

/** About what `events` add to their rows, in bytes: their log text, and a little each. */
export function payloadBytes(events: readonly { event: JobEvent }[]): number {
  let bytes = 0;
  for (const { event } of events) {
    bytes += 128;
    if (event.type !== "log") continue;
    const d = event.data;
    if ("text" in d) bytes += d.text.length;
    else if ("file" in d) continue;
    else for (const line of d.lines) bytes += line.length + 1;
  }
  return bytes;
}
