/** A raw HTTP/1.1 client: requests built byte by byte, one connection each. */

const enc = new TextEncoder();

/** Builds the raw bytes of one HTTP/1.1 request. */
export function raw(
  method: string,
  target: string | Uint8Array,
  opts: {
    headers?: [string, string | Uint8Array][];
    body?: Uint8Array | string;
    chunked?: boolean;
  } = {},
): Uint8Array {
  const parts: Uint8Array[] = [enc.encode(`${method} `)];
  parts.push(typeof target === "string" ? enc.encode(target) : target);
  parts.push(enc.encode(" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"));
  for (const [k, v] of opts.headers ?? []) {
    parts.push(enc.encode(`${k}: `), typeof v === "string" ? enc.encode(v) : v, enc.encode("\r\n"));
  }
  const body = typeof opts.body === "string" ? enc.encode(opts.body) : opts.body;
  if (body && opts.chunked) {
    parts.push(enc.encode("Transfer-Encoding: chunked\r\n\r\n"));
    for (let i = 0; i < body.length; i += 16384) {
      const c = body.subarray(i, i + 16384);
      parts.push(enc.encode(`${c.length.toString(16)}\r\n`), c, enc.encode("\r\n"));
    }
    parts.push(enc.encode("0\r\n\r\n"));
  } else {
    if (body) parts.push(enc.encode(`Content-Length: ${body.length}\r\n`));
    parts.push(enc.encode("\r\n"));
    if (body) parts.push(body);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Sends raw bytes on a new connection and reads one response (head, then Content-Length
 * bytes, or to EOF). `halfClose` shuts the write side after sending. Status null when
 * nothing came back.
 */
export async function send(
  port: number,
  bytes: Uint8Array,
  halfClose = false,
): Promise<{ status: number | null; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 15_000);
  const chunks: Uint8Array[] = [];
  try {
    try {
      for (let o = 0; o < bytes.length;) o += await conn.write(bytes.subarray(o));
      if (halfClose) await conn.closeWrite();
    } catch {
      // the server may answer (413) and close before the whole body is written
    }
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
      if (complete(concat(chunks))) break;
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
  const text = new TextDecoder().decode(concat(chunks));
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  return { status: m ? Number(m[1]) : null, body: text.slice(text.indexOf("\r\n\r\n") + 4) };
}

/** True once a whole response with a Content-Length has arrived. */
function complete(bytes: Uint8Array): boolean {
  const text = new TextDecoder().decode(bytes);
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
  return length !== null &&
    bytes.length >= new TextEncoder().encode(text.slice(0, end + 4)).length +
        Number(length[1]);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
