/** SSE helpers for tests: read a real server's stream, with the CLI's own parser. */
import { readSse, type SseItem, type SseMessage } from "../../cli/sse.ts";

export type { SseMessage };

export interface OpenStream {
  status: number;
  headers: Headers;
  /** The next message or comment; null when the stream ended. */
  next(): Promise<SseItem | null>;
  /** Messages until `stop(message)` holds (included) or the stream ends. */
  messages(stop?: (m: SseMessage) => boolean): Promise<SseMessage[]>;
  /** Drops the connection, as a client that goes away does. */
  close(): Promise<void>;
}

/** Opens `path` on `base` as an SSE stream. */
export async function openStream(
  base: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<OpenStream> {
  const abort = new AbortController();
  const res = await fetch(base + path, { headers, signal: abort.signal });
  const items = res.ok && res.body ? readSse(res.body) : null;
  const body = items ? null : await res.text();
  const next = async () => {
    if (!items) throw new Error(`no stream: ${res.status} ${body}`);
    const r = await items.next();
    return r.done ? null : r.value;
  };
  return {
    status: res.status,
    headers: res.headers,
    next,
    async messages(stop = () => false) {
      const out: SseMessage[] = [];
      for (let item = await next(); item; item = await next()) {
        if (item.kind !== "message") continue;
        out.push(item.message);
        if (stop(item.message)) break;
      }
      return out;
    },
    async close() {
      abort.abort();
      await items?.return(undefined).catch(() => {});
    },
  };
}

/** The JSON `data` of a message. */
// deno-lint-ignore no-explicit-any
export function dataOf(m: SseMessage): any {
  return JSON.parse(m.data);
}
