/**
 * Reads a job's stdout from its spool file (jobs/log_capture.ts) behind the job, for the
 * OutputCollector: whole lines go to `lines` as bytes, a line longer than the buffer goes
 * through `cut` piece by piece (as a pipe's would), and the last line, without its "\n", to
 * `last`. Reads are positional reads of the page cache, on this thread: an async read's trip
 * through the runtime's blocking pool cost more than the read (0.3 ms of the supervisor's
 * thread per no-op job).
 */
import { decodeRange } from "../db/log_files.ts";
import type { LogSource } from "./log_capture.ts";

export interface SpoolSink {
  /**
   * Whole lines, the last "\n" included. `bytes` is the reader's buffer, valid only during
   * the call: it is overwritten next, and reused by another job's reader after this one.
   */
  lines(bytes: Uint8Array): void;
  /** Handles full pieces off the front of an overlong line's text; returns the rest. */
  cut(text: string): string;
  /** One line (or the last piece of an overlong one). */
  line(text: string): void;
  /** What followed the last "\n" when the job ended. */
  last(text: string): void;
  /** Resolves when there is room for more; null while there is. */
  room(): Promise<void> | null;
}

/** Bytes read from a log file at a time: about one log event's worth. */
const FILE_READ_BYTES = 256 * 1024;
/** Longest wait before looking at a quiet log file again (it doubles from 1 ms). */
const FILE_POLL_MAX_MS = 25;
/** Bytes read last that are read again before reading on: a rewritten file shows there. */
const GUARD_BYTES = 32;
/** Bytes read between two looks at how far behind the job the reader is. */
const LAG_CHECK_BYTES = 8 * 1024 * 1024;
/** Longest the reader of a job's file keeps its thread without letting other work run. */
const YIELD_MS = 10;

function equal(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The last `size` bytes of what the guard held followed by the bytes just read. */
function lastBytes(
  before: Uint8Array,
  buf: Uint8Array,
  from: number,
  end: number,
  size: number,
): Uint8Array {
  const joined = new Uint8Array(before.length + end - from);
  joined.set(before);
  joined.set(buf.subarray(from, end), before.length);
  return joined.subarray(joined.length - size);
}

/**
 * Read buffers of readers that ended, for the next ones. A new 256 KiB buffer per job was a
 * fresh mapping of the allocator, and external memory that drove the thread's garbage
 * collections (no-op jobs, most of whose buffers were never written).
 */
const spareBuffers: Uint8Array[] = [];
const SPARE_BUFFERS = 16;

/** Reads `file` until `ended` and its end then; see the module's comment. */
export async function readSpool(
  file: LogSource,
  ended: Promise<void>,
  sink: SpoolSink,
): Promise<void> {
  // What follows the last whole line stays at its start: always less than all of it.
  const buf = spareBuffers.pop() ?? new Uint8Array(FILE_READ_BYTES);
  try {
    await readInto(buf, file, ended, sink);
  } finally {
    // The sink copies what it keeps (text, or bytes written at once): nothing refers to it.
    if (spareBuffers.length < SPARE_BUFFERS) spareBuffers.push(buf);
  }
}

async function readInto(
  buf: Uint8Array,
  file: LogSource,
  ended: Promise<void>,
  sink: SpoolSink,
): Promise<void> {
  let done = false;
  let wake: (() => void) | null = null;
  ended.then(() => {
    done = true;
    wake?.();
  });
  let have = 0;
  let pos = 0; // the file offset of buf[0]
  let idle = 1;
  let final = false;
  let yielded = performance.now();
  // Inside a line longer than the buffer: its text so far, handled as a pipe's.
  let long: { decoder: TextDecoder; rest: string } | null = null;
  // The last bytes read, to see that they are still there before reading on.
  const guard = new Uint8Array(GUARD_BYTES);
  const check = new Uint8Array(GUARD_BYTES);
  let guarded = 0;
  let readBytes = 0;
  let resetAfterEnd = false;
  for (;;) {
    // The job rewrote its stdout (`> /dev/stdout` truncates it): all of it is new.
    const readEnd = pos + have;
    // Once more at most after the job ended: a process that escaped its end could rewrite
    // the file forever, and the job's end would wait for it.
    if (guarded > 0 && (!done || !resetAfterEnd)) {
      const got = file.read(check.subarray(0, guarded), readEnd - guarded);
      if (got < guarded || !equal(check.subarray(0, guarded), guard.subarray(0, guarded))) {
        [pos, have, long, guarded] = [0, 0, null, 0];
        resetAfterEnd = done;
        continue;
      }
    }
    // A read of the page cache takes microseconds: an async read's trip through the
    // runtime's blocking pool cost more than the read (0.3 ms of this thread per no-op job).
    const n = file.read(buf.subarray(have), pos + have);
    if (n > 0) {
      const end = have + n;
      const before = guard.subarray(0, guarded);
      guarded = Math.min(GUARD_BYTES, pos + end);
      guard.set(
        end >= guarded
          ? buf.subarray(end - guarded, end)
          : lastBytes(before, buf, have, end, guarded),
      );
    }
    if (n === 0) {
      if (final) break;
      if (readBytes > 0) {
        readBytes = 0;
        file.behind?.(pos + have);
      }
      if (done) final = true;
      else {
        await new Promise<void>((r) => {
          const timer = setTimeout(r, idle);
          wake = () => (clearTimeout(timer), r());
        });
        wake = null;
        idle = Math.min(idle * 2, FILE_POLL_MAX_MS);
        yielded = performance.now();
      }
      continue;
    }
    idle = 1;
    have += n;
    // Far behind a job that writes faster than its lines are kept: it waits (as on a pipe).
    if ((readBytes += n) >= LAG_CHECK_BYTES) {
      readBytes = 0;
      file.behind?.(pos + have);
    }
    // A byte-order mark at the start is dropped, as a pipe's decoder drops it.
    if (pos === 0 && have >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) {
      buf.copyWithin(0, 3, have);
      [have, pos] = [have - 3, 3];
    }
    let used = 0;
    if (long) {
      const nl = buf.subarray(0, have).indexOf(10);
      const end = nl < 0 ? have : nl;
      const text = long.rest + long.decoder.decode(buf.subarray(0, end), { stream: nl < 0 });
      long.rest = sink.cut(text);
      if (nl >= 0) {
        // The empty end of a line cut into exact pieces is not a line (as in #split).
        if (long.rest !== "") sink.line(long.rest);
        long = null;
      }
      used = nl < 0 ? have : nl + 1;
    }
    if (!long) {
      const last = buf.subarray(used, have).lastIndexOf(10);
      if (last >= 0) {
        sink.lines(buf.subarray(used, used + last + 1));
        used += last + 1;
      } else if (have - used >= FILE_READ_BYTES) {
        // No line end in a whole buffer: the line is cut into pieces as a pipe's would be.
        long = { decoder: new TextDecoder("utf-8", { ignoreBOM: true }), rest: "" };
        const text = long.decoder.decode(buf.subarray(used, have), { stream: true });
        long.rest = sink.cut(text);
        used = have;
      }
    }
    buf.copyWithin(0, used, have);
    have -= used;
    pos += used;
    for (let room = sink.room(); room; room = sink.room()) {
      await room;
      yielded = performance.now();
    }
    // A job that never pauses must not keep this thread from its timers and other jobs.
    if (performance.now() - yielded > YIELD_MS) {
      await new Promise((r) => setTimeout(r, 0));
      yielded = performance.now();
    }
  }
  // The last line, without its "\n".
  let rest = long ? long.rest + long.decoder.decode(buf.subarray(0, have)) : "";
  if (!long && have > 0) rest = decodeRange(buf.subarray(0, have));
  sink.last(rest);
}
