/**
 * SSE messages of stored events. The stored data is already JSON text without line breaks,
 * so it goes out as it is, without a parse and a stringify per client.
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
      await stream.write(head(e));
      for (let at = 0; at < e.size && !stream.aborted; at += SLICE_CHARS) {
        await stream.write(await dataSlice(db, e.seq, at, SLICE_CHARS));
      }
      await stream.write("}\n\n");
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

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
