/**
 * The client side of the remote kill drill: submissions (some with `max_attempts` 2 or 3),
 * cancels and status reads spread over every server, whether it is up or being killed. Every
 * 2xx is witnessed; a refused connection is expected (the server is down), any answer a
 * client should not get is a problem.
 */
import type { Witness } from "./invariants.ts";

export interface WorkloadOptions {
  urls: string[];
  w: Witness;
  random: () => number;
  /** Model types to submit, with their weights. */
  types: [string, number][];
  /** Waiting jobs above which submitters hold off, so the queue can drain at the end. */
  maxWaiting: number;
}

export interface WorkloadStats {
  requests: number;
  /** Requests that met a dead server (refused, reset, timed out). */
  unreachable: number;
  with_max_attempts: number;
  status_reads: number;
  /** Answers a client should never get, e.g. `POST /train answered 500: ...`. */
  problems: string[];
}

export interface Workload {
  stats: WorkloadStats;
  stop(): Promise<void>;
}

/** Starts the client loops; `stop()` ends them once their request in flight is answered. */
export function startWorkload(opts: WorkloadOptions): Workload {
  const { w, random } = opts;
  const stats: WorkloadStats = {
    requests: 0,
    unreachable: 0,
    with_max_attempts: 0,
    status_reads: 0,
    problems: [],
  };
  let running = true;
  let waiting = 0;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const url = () => opts.urls[Math.floor(random() * opts.urls.length)];
  const call = async (method: string, path: string, body?: unknown) => {
    stats.requests++;
    try {
      const res = await fetch(url() + path, {
        method,
        headers: { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
      return { status: res.status, json: await res.json() };
    } catch {
      stats.unreachable++;
      return null;
    }
  };
  const problem = (what: string, res: { status: number; json: unknown }) => {
    if (stats.problems.length < 50) {
      stats.problems.push(`${what} answered ${res.status}: ${JSON.stringify(res.json)}`);
    }
  };
  const pick = () => {
    const ids = [...w.accepted];
    // Recent jobs more often: they are the ones still waiting or running.
    return ids[Math.floor(ids.length * Math.sqrt(random()))];
  };
  const pickType = () => {
    const total = opts.types.reduce((n, [, weight]) => n + weight, 0);
    let r = random() * total;
    for (const [type, weight] of opts.types) if ((r -= weight) < 0) return type;
    return opts.types[0][0];
  };

  const submitter = async () => {
    while (running) {
      await sleep(50 + random() * 250);
      if (waiting > opts.maxWaiting) continue;
      const type = pickType();
      const body: Record<string, unknown> = { model_type: type, retrain: true };
      const r = random();
      if (type !== "all" && r < 0.35) {
        body.max_attempts = r < 0.2 ? 2 : 3;
        stats.with_max_attempts++;
      }
      const res = await call("POST", "/train", body);
      if (!res) continue;
      if (res.status !== 200) {
        problem("POST /train", res);
        continue;
      }
      w.accepted.add(res.json.job_id);
      for (const c of res.json.children ?? []) w.accepted.add(c.job_id);
    }
  };
  const canceller = async () => {
    while (running) {
      await sleep(100 + random() * 400);
      const id = pick();
      if (!id) continue;
      const path = random() < 0.5 ? `/train/job/${id}` : `/train/job/cancel/${id}`;
      const res = await call("DELETE", path);
      if (!res) continue;
      if (res.status === 200) w.cancelled.add(id);
      else if (res.status !== 409) problem(`DELETE ${path}`, res);
    }
  };
  const reader = async () => {
    while (running) {
      await sleep(20 + random() * 80);
      if (random() < 0.2) {
        const res = await call("GET", "/health");
        if (!res) continue;
        if (res.status !== 200) problem("GET /health", res);
        else waiting = res.json.queue_depth;
        continue;
      }
      const id = pick();
      if (!id) continue;
      const res = await call("GET", `/train/status/${id}`);
      if (!res) continue;
      stats.status_reads++;
      if (res.status !== 200) problem(`GET /train/status/${id}`, res);
    }
  };
  const loops = [submitter(), submitter(), canceller(), reader(), reader()];
  return {
    stats,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}
