/**
 * SSE messages of stored events. The stored data is already JSON text without line breaks,
 * so it goes out as it is, without a parse and a stringify per client; a log chunk's text
 * is turned into its JSON once per page read (db/stream_queries.ts), or slice by slice here.
 */
import type { SSEStreamingApi } from "hono/streaming";
import type { Db } from "../db/client.ts";
import { dataSlice, type StreamRow } from "../db/stream_queries.ts";

/** Data is read and written in slices of this many characters when it is too long for a page. */
export const SLICE_CHARS = 16 * 1024;

/**
 * Writes `page` as SSE messages; returns the new cursor. Data too long for a page is read
 * and written in slices, each once the client has taken the one before.
 */
export async function send(db: Db, stream: SSEStreamingApi, page: StreamRow[], cursor: number) {
  // One write per page (each write is a trip through the HTTP stack), split only around
  // data read in slices.
  let batch: Uint8Array[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    await stream.write(batch.length === 1 ? batch[0] : concat(batch));
    batch = [];
  };
  for (const e of page) {
    if (stream.aborted) return cursor;
    if (e.data !== null) {
      batch.push(message(e));
    } else {
      await flush();
      // A log chunk's text goes out as the `lines` array it holds, a slice at a time.
      const chunk = e.stream !== null;
      await stream.write(
        head(e) + (chunk ? `{"stream":${JSON.stringify(e.stream)},"lines":["` : ""),
      );
      for (let at = 0; at < e.size && !stream.aborted; at += SLICE_CHARS) {
        const part = await dataSlice(db, e.seq, at, SLICE_CHARS);
        await stream.write(chunk ? jsonLines(part) : part);
      }
      await stream.write(chunk ? `"]}}\n\n` : "}\n\n");
    }
    cursor = e.seq;
  }
  await flush();
  return cursor;
}

const encoder = new TextEncoder();
/** Streams woken by one commit share its page's rows: each message is encoded once. */
const messages = new WeakMap<StreamRow, Uint8Array>();

function message(e: StreamRow): Uint8Array {
  let bytes = messages.get(e);
  if (!bytes) {
    bytes = encoder.encode(`${head(e)}${e.data}}\n\n`);
    messages.set(e, bytes);
  }
  return bytes;
}

/** An event's SSE lines up to its data's JSON text. */
function head(e: StreamRow): string {
  return `id: ${e.seq}\nevent: ${e.type}\ndata: {"seq":${e.seq},"job_id":${
    JSON.stringify(e.job_id)
  },"version":${e.version},"at":${JSON.stringify(e.at)},"type":${JSON.stringify(e.type)},"data":`;
}

/**
 * A slice of lines joined by "\n" as the inside of a JSON array of strings: each piece
 * escaped, and each "\n" closing one string and opening the next. A slice may end inside a
 * surrogate pair; each half is escaped alone (`\ud83d`, `\ude00`), and the two escapes
 * parse back into the pair.
 */
export function jsonLines(part: string): string {
  return part.split("\n").map((l) => JSON.stringify(l).slice(1, -1)).join('","');
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
