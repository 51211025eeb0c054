/**
 * The worker's HTTP client for the routes of contract/worker.ts: one POST, its answer sorted
 * into what the caller must tell apart. Requests are typed by the contract; every answer is
 * parsed with its zod schema, so a server speaking another version of the protocol is an
 * error here rather than a wrong value deep in the supervisor.
 */
import { z } from "zod";

/** What one call came to. `unreachable` is worth retrying; `refused` is the server's "no". */
export type Answer<T> =
  | { kind: "ok"; value: T }
  | {
    kind: "refused";
    status: number;
    message: string;
    code: string | null;
    expected: number | null;
  }
  | { kind: "unreachable"; error: string }
  | { kind: "aborted" };

const ErrorEnvelope = z.object({
  message: z.string().optional(),
  details: z.array(
    z.object({ code: z.string().optional(), expected_offset: z.number().int().optional() })
      .passthrough(),
  ).optional(),
});

/** Longest wait for any answer beyond a claim's long poll: a hung connection is an outage. */
const REQUEST_TIMEOUT_MS = 60_000;

export class ApiClient {
  constructor(readonly baseUrl: string, readonly token: string) {}

  /**
   * POSTs `body` to `path` (under TRAINER_URL) and parses the answer with `schema`. Never
   * throws: network errors, timeouts and 5xx answers are `unreachable` (the API may be
   * restarting), other non-2xx answers and answers that break the contract are `refused`.
   */
  async post<T>(
    path: string,
    body: unknown,
    schema: z.ZodType<T>,
    opts: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<Answer<T>> {
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? REQUEST_TIMEOUT_MS);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    let status: number;
    let text: string;
    try {
      const res = await fetch(this.baseUrl + path, {
        method: "POST",
        headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
        signal,
      });
      status = res.status;
      text = await res.text();
    } catch (e) {
      if (opts.signal?.aborted) return { kind: "aborted" };
      return { kind: "unreachable", error: timeout.aborted ? "no answer in time" : errorText(e) };
    }
    if (status >= 500) return { kind: "unreachable", error: `HTTP ${status}${brief(text)}` };
    const json = parseJson(text);
    if (status >= 200 && status < 300) {
      const parsed = schema.safeParse(json);
      if (parsed.success) return { kind: "ok", value: parsed.data };
      return refused(
        status,
        `the answer to ${path} breaks the worker contract: ` +
          parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
      );
    }
    const envelope = ErrorEnvelope.safeParse(json);
    const detail = envelope.success ? envelope.data.details?.[0] : undefined;
    return {
      kind: "refused",
      status,
      message: (envelope.success ? envelope.data.message : undefined) ??
        `HTTP ${status}${brief(text)}`,
      code: detail?.code ?? null,
      expected: detail?.expected_offset ?? null,
    };
  }
}

function refused(status: number, message: string): Answer<never> {
  return { kind: "refused", status, message, code: null, expected: null };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function brief(text: string): string {
  const t = text.trim().slice(0, 200);
  return t ? `: ${t}` : "";
}

/** An error's message, with its cause (fetch hides "connection refused" there). */
export function errorText(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = e.cause instanceof Error ? ` (${e.cause.message})` : "";
  return `${e.message}${cause}`;
}
