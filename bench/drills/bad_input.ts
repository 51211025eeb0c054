/**
 * Bad input drill: thousands of generated bad requests against the real server. None may
 * be answered 5xx or 2xx, the server must stay up, and the database must not change.
 */
import { DatabaseSync } from "node:sqlite";
import { startServer, waitFor, writeRegistry } from "../lib/server.ts";
import { rng } from "./kill_loop.ts";
import { type BadRequest, FAMILIES } from "./bad_requests.ts";
import { DrillFailure } from "./failure.ts";
import { send } from "./raw_http.ts";

export interface BadInputOptions {
  requests: number;
  dir: string;
  seed?: number;
  concurrency?: number;
  log?: (message: string) => void;
}

export interface BadInputFigures {
  requests_tried: number;
  seed: number;
  by_status: Record<string, number>;
  by_family: Record<string, number>;
  dropped_without_answer: number;
  error_envelopes: number;
  health_checks: number;
  database_unchanged: boolean;
  /** Answers that broke a rule (5xx, accepted, no answer), by status and family. */
  failures: Record<string, number>;
}

export async function badInput(opts: BadInputOptions): Promise<BadInputFigures> {
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = rng(seed);
  const registry = await writeRegistry(opts.dir, { noop: { command: ["/bin/true"] } });
  const server = await startServer({ dir: opts.dir, env: { MODEL_REGISTRY: registry } });
  const port = Number(new URL(server.url).port);
  const figures: BadInputFigures = {
    requests_tried: 0,
    seed,
    by_status: {},
    by_family: {},
    dropped_without_answer: 0,
    error_envelopes: 0,
    health_checks: 0,
    database_unchanged: false,
    failures: {},
  };
  let serverDown = false;
  const problems: string[] = [];
  try {
    // One finished job, so that path parameters can also name a job that exists.
    const res = await fetch(`${server.url}/train/noop`, { method: "POST" });
    const existing = (await res.json()).data.job_id as string;
    await waitFor("the seed job to finish", async () => {
      const s = await (await fetch(`${server.url}/train/status/${existing}`)).json();
      return s.data.status === "failed" ? true : undefined;
    });
    const before = snapshot(server.dbPath);
    const families = Object.values(FAMILIES);
    let next = 0;
    const worker = async () => {
      while (next < opts.requests && !serverDown) {
        const n = next++;
        const req = families[n % families.length](random, existing);
        const answer = await send(port, req.bytes, req.halfClose);
        record(figures, req, answer, problems);
        if (n % 250 === 0) {
          const h = await fetch(`${server.url}/health`);
          await h.body?.cancel();
          figures.health_checks++;
          if (h.status !== 200) {
            serverDown = true;
            problems.push(`/health answered ${h.status} after ${n} requests`);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency ?? 4 }, worker));
    const h = await fetch(`${server.url}/health`);
    await h.body?.cancel();
    figures.health_checks++;
    if (h.status !== 200) problems.push(`/health answered ${h.status} at the end`);
    const after = snapshot(server.dbPath);
    figures.database_unchanged = JSON.stringify(before) === JSON.stringify(after);
    if (!figures.database_unchanged) {
      problems.push(`database changed: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
    }
  } finally {
    await server.stop();
  }
  opts.log?.(`bad input: ${JSON.stringify(figures)}`);
  if (problems.length) {
    const kinds = Object.entries(figures.failures).map(([k, n]) => `${n} x ${k}`).join(", ");
    throw new DrillFailure(
      `bad input drill (seed ${seed}): ${kinds || "see below"}; first examples:\n  ${
        problems.slice(0, 12).join("\n  ")
      }`,
      figures,
    );
  }
  return figures;
}

function record(
  f: BadInputFigures,
  req: BadRequest,
  answer: { status: number | null; body: string },
  problems: string[],
): void {
  f.requests_tried++;
  f.by_family[req.family] = (f.by_family[req.family] ?? 0) + 1;
  const key = answer.status === null ? "none" : String(answer.status);
  f.by_status[key] = (f.by_status[key] ?? 0) + 1;
  if (answer.status === null) f.dropped_without_answer++;
  if (answer.body.includes('"status":"error"')) f.error_envelopes++;
  const broken = answer.status === null
    ? !req.protocol && "no answer"
    : answer.status >= 500
    ? String(answer.status)
    : answer.status < 400 && `${answer.status} (accepted)`;
  if (!broken) return;
  const kind = `${broken} for ${req.family}`;
  f.failures[kind] = (f.failures[kind] ?? 0) + 1;
  if (f.failures[kind] <= 3) problems.push(`${kind}: ${req.label}: ${answer.body.slice(0, 160)}`);
}

/** Counts that any change to the log or projection moves. */
function snapshot(dbPath: string) {
  const db = new DatabaseSync(dbPath, { readOnly: true });
  try {
    return {
      events: db.prepare("SELECT count(*) AS n, max(seq) AS max FROM events").get(),
      jobs: db.prepare("SELECT count(*) AS n, max(updated_at) AS updated FROM jobs").get(),
    };
  } finally {
    db.close();
  }
}
