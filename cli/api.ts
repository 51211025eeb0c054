/** The HTTP side of the client: where the server is, its token, and its error envelope. */
import { errorMessage, follow, type SseMessage } from "./sse.ts";

/** Exit codes: a watched job completed / failed / was cancelled; the command itself failed. */
export const EXIT = { completed: 0, failed: 1, cancelled: 2, error: 3 } as const;

/** A failure of the command itself (bad input, unreachable or refusing server): exit 3. */
export class CliError extends Error {}

export interface ClientConfig {
  url: string;
  token?: string;
}

/** Reads TRAINER_URL (default http://127.0.0.1:8000) and TRAINER_TOKEN. */
export function configFromEnv(env: Record<string, string | undefined>): ClientConfig {
  const raw = env.TRAINER_URL?.trim() || "http://127.0.0.1:8000";
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`TRAINER_URL=${raw} is not a URL; use e.g. http://127.0.0.1:8000`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new CliError(`TRAINER_URL=${raw} must start with http:// or https://`);
  }
  return { url: url.href.replace(/\/+$/, ""), token: env.TRAINER_TOKEN?.trim() || undefined };
}

// deno-lint-ignore no-explicit-any
export type Json = any;

export class Api {
  constructor(readonly config: ClientConfig) {}

  get headers(): Record<string, string> {
    return this.config.token ? { authorization: `Bearer ${this.config.token}` } : {};
  }

  /** One request; the parsed JSON body, or a CliError carrying the server's message. */
  async request(method: string, path: string, body?: unknown): Promise<Json> {
    const headers: Record<string, string> = { ...this.headers };
    if (body !== undefined) headers["content-type"] = "application/json";
    let res: Response;
    try {
      res = await fetch(this.config.url + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new CliError(
        `cannot reach the trainer at ${this.config.url} (${(e as Error).message}); ` +
          `start it with ./trainer serve or set TRAINER_URL`,
      );
    }
    const text = await res.text();
    if (!res.ok) {
      const hint = res.status === 401 ? " (set TRAINER_TOKEN to the server's API_TOKEN)" : "";
      throw new CliError(`${method} ${path} failed: ${errorMessage(res.status, text)}${hint}`);
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new CliError(`${method} ${path}: the server answered with something not JSON`);
    }
  }

  /** A job's status data. */
  async status(jobId: string): Promise<Json> {
    return (await this.request("GET", `/train/status/${encodeURIComponent(jobId)}`)).data;
  }

  /** Follows a job's event stream to its `end`, reconnecting on its own. */
  stream(
    jobId: string,
    opts: { types?: string[]; onRetry?(error: unknown): void } = {},
  ): AsyncGenerator<SseMessage> {
    const query = opts.types ? `?types=${opts.types.join(",")}` : "";
    const url = `${this.config.url}/train/job/${encodeURIComponent(jobId)}/stream${query}`;
    return follow(url, { headers: this.headers, onRetry: opts.onRetry });
  }
}

/** Final exit code for a job's final status. */
export function exitFor(status: string): number {
  if (status === "completed") return EXIT.completed;
  if (status === "cancelled") return EXIT.cancelled;
  return EXIT.failed;
}
