/** The client commands other than `watch`: each calls the API and prints text or JSON. */
import { type Api, CliError, EXIT, type Json } from "./api.ts";
import { clock, metricsText, sizeText, stepText, table, when } from "./format.ts";
import { watch } from "./watch.ts";

export interface Output {
  json: boolean;
  /** stdout is a terminal: bars instead of lines. */
  tty: boolean;
}

export interface TrainOptions {
  retrain?: boolean;
  cv: boolean;
  set: string[];
  timeout?: string;
  watch?: boolean;
}

/** `train <type|all>`: submits; with --watch, follows the job and exits as it ended. */
export async function train(api: Api, type: string, opts: TrainOptions, out: Output) {
  const body: Json = {
    model_type: type,
    retrain: !!opts.retrain,
    use_cv: opts.cv,
    hyperparameters: opts.set.length ? hyperparameters(opts.set) : null,
  };
  if (opts.timeout !== undefined) body.timeout_seconds = positiveInt(opts.timeout, "--timeout");
  const r = await api.request("POST", "/train", body);
  if (out.json) {
    console.log(JSON.stringify(r));
  } else {
    console.log(`job ${r.job_id} ${r.status}: ${r.message}`);
    for (const c of r.children ?? []) console.log(`  ${c.model_type}: job ${c.job_id}`);
  }
  if (!opts.watch) return EXIT.completed;
  return await watch(api, r.job_id, out.json ? "json" : out.tty ? "bars" : "lines");
}

/** `key=value` pairs; values are JSON when they parse (numbers, booleans), else strings. */
export function hyperparameters(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const i = pair.indexOf("=");
    if (i <= 0) throw new CliError(`--set ${pair}: use key=value, e.g. --set max_depth=5`);
    const raw = pair.slice(i + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // a plain string such as --set objective=binary:logistic
    }
    out[pair.slice(0, i)] = value;
  }
  return out;
}

function positiveInt(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    throw new CliError(`${what} must be a whole number of seconds ≥ 1, not "${text}"`);
  }
  return n;
}

/** `status <job_id>` */
export async function status(api: Api, jobId: string, out: Output) {
  const d = await api.status(jobId);
  if (out.json) return console.log(JSON.stringify(d));
  const lines = [
    `job       ${d.job_id}`,
    `type      ${d.model_type}`,
    `status    ${d.status}${d.failure_reason ? ` (${d.failure_reason})` : ""}`,
    `message   ${d.message}`,
    `created   ${when(d.created_at)}`,
    `started   ${when(d.started_at)}`,
    `finished  ${when(d.completed_at ?? d.cancelled_at)}`,
    `progress  ${stepText(d.progress, d.model_type)}${
      d.model_type === "all" && d.progress?.message ? ` (${d.progress.message})` : ""
    }`,
  ];
  if (d.model_path) lines.push(`model     ${d.model_path}`);
  if (d.error) lines.push(`error     ${d.error.split("\n").join("\n          ")}`);
  if (!d.children) lines.push(`metrics   ${metricsText(d.metrics) || "-"}`);
  console.log(lines.join("\n"));
  if (d.children) {
    const rows = d.children.map((c: Json) => [
      c.model_type,
      c.job_id,
      c.status,
      stepText(c.progress),
      metricsText(c.metrics),
    ]);
    console.log(`\n${table(["type", "job", "status", "progress", "metrics"], rows)}`);
  }
}

/** `logs <job_id> [--follow]`: every line so far; with --follow, new ones until the end. */
export async function logs(api: Api, jobId: string, follow: boolean, out: Output) {
  const id = encodeURIComponent(jobId);
  if (follow) {
    for await (const m of api.stream(jobId, { types: ["log"], onRetry: retrying })) {
      if (m.event === "end") return;
      const e = JSON.parse(m.data);
      printLog({ seq: e.seq, at: e.at, ...e.data }, out);
    }
    return;
  }
  for (let after = 0;;) {
    const page = await api.request("GET", `/train/logs/${id}?after=${after}&limit=500`);
    if (page.entries.length === 0) return;
    for (const entry of page.entries) printLog(entry, out);
    after = page.next_after;
  }
}

function printLog(entry: Json, out: Output) {
  if (out.json) return console.log(JSON.stringify(entry));
  const text = entry.lines.join("\n");
  if (entry.stream === "stderr") console.error(text);
  else console.log(text);
}

function retrying(error: unknown) {
  console.error(`stream dropped (${error instanceof Error ? error.message : error}); reconnecting`);
}

/** `cancel <job_id>` */
export async function cancel(api: Api, jobId: string, out: Output) {
  const r = await api.request("DELETE", `/train/job/${encodeURIComponent(jobId)}`);
  console.log(out.json ? JSON.stringify(r) : `job ${jobId} ${r.data.status}`);
}

/** `jobs [--status s] [--type t] [--limit n]` */
export async function jobs(
  api: Api,
  opts: { status?: string; type?: string; limit?: string },
  out: Output,
) {
  const q = new URLSearchParams();
  if (opts.status) q.set("status", opts.status);
  if (opts.type) q.set("model_type", opts.type);
  if (opts.limit) q.set("limit", opts.limit);
  const r = await api.request("GET", `/train/jobs${q.size ? `?${q}` : ""}`);
  if (out.json) return console.log(JSON.stringify(r));
  const rows = r.jobs.map((j: Json) => [
    j.job_id,
    j.model_type,
    j.status + (j.failure_reason ? ` (${j.failure_reason})` : ""),
    when(j.created_at),
    clock(j.completed_at),
    stepText(j.progress, j.model_type),
  ]);
  console.log(table(["job", "type", "status", "created", "ended", "progress"], rows));
  console.log(`${r.jobs.length} shown, ${r.filtered_count} matching, ${r.total_count} in all`);
}

/** `models` */
export async function models(api: Api, out: Output) {
  const r = await api.request("GET", "/train/models/available");
  if (out.json) return console.log(JSON.stringify(r));
  const entries = Object.entries(r.available_models) as [string, Json][];
  const rows = entries.map(([name, m]) => [
    name,
    m.type,
    m.status ?? "-",
    sizeText(m.size),
    when(m.modified),
    m.job_id ?? "-",
  ]);
  console.log(table(["file", "type", "status", "size", "modified", "job"], rows));
  // What is wrong with a model that is not ok, and what to do (the API's own words).
  for (const [name, m] of entries) if (m.problem) console.log(`${m.status} ${name}: ${m.problem}`);
  const counts = Object.entries(r.counts ?? {}).filter(([, n]) => Number(n) > 0)
    .map(([status, n]) => `${n} ${status}`);
  const store = r.artifact_store ?? r.models_directory;
  console.log(
    `${rows.length} model(s) listed from ${store}${counts.length ? ` (${counts.join(", ")})` : ""}`,
  );
}
