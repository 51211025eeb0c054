/**
 * Job logs kept in files next to a local database (`<database>-logs/<job id>.stdout`).
 *
 * A local job writes its stdout to a spool file, not a pipe, and the server appends its runs
 * of plain lines to the job's log file (jobs/log_capture.ts). A stored log event then holds
 * where its lines are (`file`: a byte range, synced before the event commits) instead of the
 * text, and readers read that range. Measured on 1,000,000 lines (60 MB): through the pipe
 * and SQLite the job took 3-6x its time writing to a file, because the child waited on the
 * pipe and 60 MB went through SQLite's WAL and again through its checkpoint (see README).
 *
 * Only a local database's server writes log files (WORKERS=local, LOG_FILES): a remote
 * worker's lines reach the API as text. A range holds whole lines: it starts at a line's
 * start and ends before a line's "\n", so it decodes alone to the text of those lines.
 */
import type { Client } from "@libsql/client";
import type { LogFileRange } from "../jobs/events.ts";

/** The folder of a local database file's job logs. */
export function logDirFor(databasePath: string): string {
  return `${databasePath}-logs`;
}

/** The log file of a job's stdout, in its database's log folder. */
export function logFileName(jobId: string): string {
  return `${jobId}.stdout`;
}

const dirs = new WeakMap<Client, string>();

/** Records which folder `client`'s log ranges are read from (a local database's). */
export function attachLogDir(client: Client, dir: string): void {
  dirs.set(client, dir);
}

/** The log folder of `client`'s database; null for a remote database. */
export function logDirOf(client: Client): string | null {
  return dirs.get(client) ?? null;
}

/**
 * The text of a log range: its lines joined by "\n". A range that cannot be read (the file
 * was removed, or the database was moved without its log folder) reads as its line count of
 * one marker line each, so counts and paging still hold.
 */
export function readLogRange(
  dir: string | null,
  range: LogFileRange,
  count: number,
): string {
  const key = `${dir}/${range.name}@${range.offset}+${range.bytes}`;
  let text = recent.get(key);
  if (text === undefined) {
    text = readRange(dir, range, count);
    if (recent.size >= RECENT_RANGES) recent.delete(recent.keys().next().value!);
  } else recent.delete(key);
  recent.set(key, text);
  return text;
}

/**
 * The texts of the ranges read last, newest last. A stream sends an event longer than its
 * page in 16 KiB slices, each read on its own: without this, 20 stalled streams of a 25 MB
 * log read and decoded its 256 KiB ranges once per slice, and the server grew by 200 MB.
 */
const recent = new Map<string, string>();
const RECENT_RANGES = 8;

function readRange(dir: string | null, range: LogFileRange, count: number): string {
  try {
    if (dir === null) throw new Error("the database has no log folder (it is not a local file)");
    const file = Deno.openSync(`${dir}/${range.name}`);
    try {
      const bytes = new Uint8Array(range.bytes);
      file.seekSync(range.offset, Deno.SeekMode.Start);
      let read = 0;
      while (read < bytes.length) {
        const n = file.readSync(bytes.subarray(read));
        if (n === null) throw new Error(`${range.name} ends before byte ${range.offset + read}`);
        read += n;
      }
      return decodeRange(bytes);
    } finally {
      file.close();
    }
  } catch (e) {
    const line = `[log unavailable: ${e instanceof Error ? e.message : String(e)}]`;
    return Array(count).fill(line).join("\n");
  }
}

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * Decodes whole lines. A range starts after a "\n", so no sequence is split; a byte-order
 * mark at a job's very start never reaches the log file (the collector drops it, as a
 * pipe's decoder does), so one here is a character of the line.
 */
export function decodeRange(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}
