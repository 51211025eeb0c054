/**
 * Generators of bad HTTP requests, as raw bytes (so path traversal, odd bytes and broken
 * framing reach the server exactly as written). Every request here must be refused with a
 * 4xx; `protocol` ones may also be dropped without an answer.
 */
import { BAD_HYPER, ODD_TYPES, PARAM_ROUTES, TRAVERSAL, WRONG_VALUES } from "./bad_values.ts";
import { raw } from "./raw_http.ts";

export interface BadRequest {
  family: string;
  label: string;
  bytes: Uint8Array;
  /** Broken framing: the server may close without answering. */
  protocol?: boolean;
  /** Shut the client's write side after sending (the server may then drop the answer). */
  halfClose?: boolean;
}

type Rand = () => number;
const enc = new TextEncoder();
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const UNKNOWN_ID = "6f1c2a3e-0000-4000-8000-00000000dead";

const JSON_CT: [string, string][] = [["Content-Type", "application/json"]];

/** The generator families, each making one request from the random source. */
export const FAMILIES: Record<string, (r: Rand, existing: string) => BadRequest> = {
  traversal(r) {
    const [method, route] = pick(r, PARAM_ROUTES);
    const p = pick(r, TRAVERSAL);
    const body = method === "POST" ? '{"retrain":"maybe"}' : undefined;
    return {
      family: "traversal",
      label: `${method} ${route(p).slice(0, 60)}`,
      bytes: raw(method, route(p), { headers: body ? JSON_CT : [], body }),
    };
  },
  rawBytesInPath(r) {
    const [method, route] = pick(r, PARAM_ROUTES);
    const bytes = Uint8Array.from(
      { length: 1 + Math.floor(r() * 12) },
      () => 0x80 + Math.floor(r() * 128),
    );
    const [before, after] = route("\u0001").split("\u0001");
    const target = new Uint8Array([...enc.encode(before), ...bytes, ...enc.encode(after)]);
    return {
      family: "raw-bytes-in-path",
      label: `${method} ${before}<bytes>`,
      bytes: raw(method, target),
      protocol: true,
    };
  },
  truncatedJson(r) {
    const full = JSON.stringify({
      model_type: "xgboost",
      retrain: true,
      hyperparameters: { n_estimators: 20 },
    });
    let cut: string;
    do cut = full.slice(0, Math.floor(r() * full.length)); while (
      validJson(cut) || cut.trim() === ""
    );
    const single = r() < 0.5;
    return {
      family: "truncated-json",
      label: cut.slice(0, 40),
      bytes: raw("POST", single ? "/train/xgboost" : "/train", { headers: JSON_CT, body: cut }),
    };
  },
  garbageBody(r) {
    const body = Uint8Array.from(
      { length: 1 + Math.floor(r() * 300) },
      () => Math.floor(r() * 256),
    );
    // Valid JSON, or only whitespace (an empty body: the defaults), is not bad input; "{" in
    // front is never valid.
    const text = new TextDecoder().decode(body);
    if (validJson(text) || text.trim() === "") body[0] = 0x7b;
    return {
      family: "garbage-body",
      label: `${body.length} random bytes`,
      bytes: raw("POST", pick(r, ["/train", "/train/noop"]), { headers: JSON_CT, body }),
    };
  },
  wrongTypes(r) {
    const field = pick(r, Object.keys(WRONG_VALUES));
    const value = pick(r, WRONG_VALUES[field]);
    const single = r() < 0.5;
    const body = single ? { [field]: value } : { model_type: "noop", [field]: value };
    return {
      family: "wrong-types",
      label: JSON.stringify(body).slice(0, 60),
      bytes: raw("POST", single ? "/train/noop" : "/train", {
        headers: JSON_CT,
        body: JSON.stringify(body),
      }),
    };
  },
  notAnObject(r) {
    const body = pick(r, ["[]", '"noop"', "123", "true", "null", "[{}]", "1e999", '"\\ud800"']);
    const single = r() < 0.5;
    return {
      family: "not-an-object",
      label: body,
      bytes: raw("POST", single ? "/train/noop" : "/train", { headers: JSON_CT, body }),
    };
  },
  badHyperparameters(r) {
    const [type, hp] = pick(r, BAD_HYPER);
    const body = JSON.stringify(
      r() < 0.5 ? { hyperparameters: hp } : { model_type: type, hyperparameters: hp },
    );
    const path = body.includes("model_type") ? "/train" : `/train/${type}`;
    return {
      family: "bad-hyperparameters",
      label: body.slice(0, 60),
      bytes: raw("POST", path, { headers: JSON_CT, body }),
    };
  },
  oddUnicode(r) {
    const type = pick(r, ODD_TYPES);
    const body = JSON.stringify({ model_type: type, retrain: true });
    const escaped = r() < 0.5
      ? body
      : body.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
    return {
      family: "odd-unicode",
      label: escaped.slice(0, 60),
      bytes: raw("POST", "/train", { headers: JSON_CT, body: escaped }),
    };
  },
  deepNesting(r) {
    const depth = pick(r, [1000, 10000, 30000]);
    const body = r() < 0.5
      ? "[".repeat(depth) + "]".repeat(depth)
      : `{"hyperparameters":${'{"a":'.repeat(depth / 10)}1${"}".repeat(depth / 10)}}`;
    return {
      family: "deep-nesting",
      label: `depth ${depth}`,
      bytes: raw("POST", "/train/xgboost", { headers: JSON_CT, body }),
    };
  },
  oversized(r) {
    const size = pick(r, [64 * 1024 + 1, 100_000, 1024 * 1024]);
    const body = JSON.stringify({ hyperparameters: { blob: "x".repeat(size) } });
    const chunked = r() < 0.5;
    return {
      family: "oversized",
      label: `${body.length} bytes${chunked ? " chunked" : ""}`,
      bytes: raw("POST", "/train/noop", { headers: JSON_CT, body, chunked }),
    };
  },
  wrongMethod(r) {
    const [method, path] = pick(
      r,
      [
        ["GET", "/train"],
        ["PUT", "/train"],
        ["PATCH", "/train/noop"],
        ["GET", "/train/noop"],
        ["PUT", "/train/noop"],
        ["POST", `/train/status/${UNKNOWN_ID}`],
        ["PUT", "/train/jobs"],
        ["POST", "/train/models/available"],
        ["POST", `/train/logs/${UNKNOWN_ID}`],
        ["PATCH", `/train/job/${UNKNOWN_ID}/events`],
        ["GET", `/train/job/cancel/${UNKNOWN_ID}`],
        ["POST", "/health"],
        ["DELETE", "/health"],
        ["FOO", "/train/noop"],
        ["PROPFIND", "/train"],
        ["OPTIONS", "/train/noop"],
        ["DELETE", "/train/noop"],
      ] as const,
    );
    const body = method === "GET" || method === "DELETE" ? undefined : '{"retrain":true}';
    return {
      family: "wrong-method",
      label: `${method} ${path}`,
      bytes: raw(method, path, { headers: body ? JSON_CT : [], body }),
    };
  },
  wrongContentType(r) {
    const ct = pick(r, [
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/xml",
      "application/jsonx",
      "text/json",
      "image/png",
      "json",
    ]);
    const single = r() < 0.5;
    const body = single ? '{"retrain":true}' : '{"model_type":"noop","retrain":true}';
    return {
      family: "wrong-content-type",
      label: ct,
      bytes: raw("POST", single ? "/train/noop" : "/train", {
        headers: [["Content-Type", ct]],
        body,
      }),
    };
  },
  badQuery(r, existing) {
    const common = ["limit=-1", "limit=0", "limit=1001", "limit=1e309", "limit=abc", "limit=1.5"];
    const list = [
      ...common,
      "limit=99999999999999999999",
      "offset=-1",
      "offset=1e12",
      "offset=x",
      "status=bogus",
      "status=RUNNING",
      "status=running%00",
      `model_type=${"m".repeat(65)}`,
      "unknown=1",
      "limit=%F0%9F%92%A9",
    ];
    const page = [
      ...common,
      "after=-1",
      "after=x",
      "after=1e309",
      `type=${"t".repeat(201)}`,
      "x=1",
    ];
    const path = pick(r, [
      "/train/jobs",
      `/train/logs/${existing}`,
      `/train/job/${existing}/events`,
    ]);
    const target = `${path}?${pick(r, path === "/train/jobs" ? list : page)}`;
    return { family: "bad-query", label: target.slice(0, 60), bytes: raw("GET", target) };
  },
  badIdempotencyKey(r) {
    const key: string | Uint8Array = pick(r, [
      "",
      "has space",
      "k".repeat(201),
      new Uint8Array([0xe2, 0x80, 0xae, 0x41]),
      "\t",
    ]);
    return {
      family: "bad-idempotency-key",
      label: typeof key === "string" ? key.slice(0, 20) : "<bytes>",
      bytes: raw("POST", "/train/noop", {
        headers: [...JSON_CT, ["Idempotency-Key", key]],
        body: '{"retrain":true}',
      }),
    };
  },
  halfClosed(r, existing) {
    const inner = pick(r, [FAMILIES.oversized, FAMILIES.deepNesting, FAMILIES.truncatedJson])(
      r,
      existing,
    );
    return { ...inner, family: "half-closed", halfClose: true, protocol: true };
  },
  brokenFraming(r) {
    const text = pick(r, [
      "GARBAGE\r\n\r\n",
      "GET /train/jobs HTTP/9.9\r\n\r\n",
      "POST /train/noop HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
      "POST /train/noop HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
      "GET /train/jobs HTTP/1.1\r\nBad Header\r\n\r\n",
      "\r\n\r\n",
      "POST /train/noop HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
    ]);
    return {
      family: "broken-framing",
      label: JSON.stringify(text.slice(0, 30)),
      bytes: enc.encode(text),
      protocol: true,
    };
  },
};

function validJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
