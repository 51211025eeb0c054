/**
 * Hostile scripts (issue 7): the real server, one slot, and training scripts that attack it
 * through their output, their artifact and their processes. Reports whether the slot is
 * freed and how fast, the server's RSS peak, whether files outside MODELS_DIR and other
 * jobs' models survive, and how many processes still carry a job's TRAIN_JOB_ID afterwards.
 * Every check is reported as measured; the drill fails if any of them does.
 */
import { join } from "node:path";
import { jobProcesses, memoryMb, sampleRss } from "../lib/procfs.ts";
import { startServer, waitFor, writeRegistry } from "../lib/server.ts";
import { DrillFailure } from "./failure.ts";
import { HOSTILE_PY, HOSTILE_PYTHON } from "./hostile_script.ts";

export interface HostileOptions {
  dir: string;
  /** Progress lines of the flood (issue 7: 300,000). */
  floodLines: number;
  /** Bytes of the huge line (issue 7: 10 MB). */
  hugeBytes: number;
  log?: (message: string) => void;
}

const RSS_LIMIT_MB = 300;
const DAEMON_SECONDS = 600;

// deno-lint-ignore no-explicit-any
type Json = any;

export async function hostileDrill(o: HostileOptions): Promise<Record<string, unknown>> {
  const log = o.log ?? (() => {});
  const models = join(o.dir, "models");
  const outside = join(o.dir, "outside");
  await Deno.mkdir(models, { recursive: true });
  await Deno.mkdir(outside, { recursive: true });
  // Files a careless cleanup would reach: names sharing a stem with what the scripts report.
  for (const name of ["victim.joblib", "victim.meta.json", "victim_notes.txt", "secret.joblib"]) {
    await Deno.writeTextFile(join(outside, name), `outside ${name}`);
  }
  await Deno.symlink(outside, join(models, "link"));
  const script = join(o.dir, "hostile.py");
  await Deno.writeTextFile(script, HOSTILE_PY);
  const run = (...args: string[]) => ({ command: [HOSTILE_PYTHON, script, ...args] });
  const registry = await writeRegistry(o.dir, {
    fine: run("ok"),
    flood: run("flood", String(o.floodLines), "100"),
    deep: run("deep", "6000"),
    huge: run("huge", String(o.hugeBytes)),
    dotx: run("bad_artifact", ".x"),
    linked: run("bad_artifact", "link/victim.joblib"),
    symlink: run("symlink_model", join(outside, "secret.joblib")),
    daemon: run("daemon", String(DAEMON_SECONDS)),
  });
  const server = await startServer({
    dir: o.dir,
    env: { MODEL_REGISTRY: registry, MAX_CONCURRENT_JOBS: "1", CANCEL_GRACE_SECONDS: "2" },
  });
  const rss = sampleRss(server.pid, 50);
  const jobIds = new Set<string>();
  const api = async (method: string, path: string, body?: unknown): Promise<Json> => {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { "content-type": "application/json" };
    }
    return await (await fetch(`${server.url}${path}`, init)).json();
  };
  const submit = async (type: string) => {
    // retrain: an earlier model of the type must not stand in for running the script.
    const body = await api("POST", `/train/${type}`, { retrain: true });
    if (!body.data?.job_id) throw new Error(`POST /train/${type}: ${JSON.stringify(body)}`);
    jobIds.add(body.data.job_id);
    return body.data.job_id as string;
  };
  const status = async (id: string) => (await api("GET", `/train/status/${id}`)).data;
  const terminal = (id: string, ms = 120_000) =>
    waitFor(
      `job ${id} to end`,
      // Every job here runs a process, whose end is its last event. Polled instead of the
      // status, which carries the log tail: megabytes a poll after the huge line, and the drill
      // measures the server's memory.
      async () => {
        const ended = await api("GET", `/train/job/${id}/events?type=process_exited`);
        return ended.events?.length ? await status(id) : undefined;
      },
      ms,
      50,
    ).catch(async () => ({ ...await status(id), wedged: true }));

  const figures: Record<string, unknown> = {};
  // The server's high-water mark after each phase shows which attack costs the memory.
  const peaks: Record<string, number> = {};
  const mark = (phase: string) => peaks[phase] = Math.round(memoryMb(server.pid)?.peak ?? 0);
  figures.server_rss_peak_after_mb = peaks;
  try {
    mark("start");
    const first = await terminal(await submit("fine"));
    log(`a finished job's model: ${first.model_path}`);
    mark("first_job");

    figures.flood = await flood(o.floodLines, submit, status, terminal, api);
    log(`flood: ${JSON.stringify(figures.flood)}`);
    mark("flood");
    const deep = await terminal(await submit("deep"));
    figures.deep_json = { status: deep.status, warnings: deep.warnings, wedged: !!deep.wedged };
    log(`deep JSON: ${JSON.stringify(figures.deep_json)}`);
    mark("deep_json");
    const huge = await terminal(await submit("huge"));
    figures.huge_line = {
      bytes: o.hugeBytes,
      status: huge.status,
      log_lines: huge.log_lines,
      wedged: !!huge.wedged,
    };
    log(`huge line: ${JSON.stringify(figures.huge_line)}`);
    mark("huge_line");

    // Every model so far belongs to another job; ".x" goes last as it would reach them all.
    const before = await snapshot([outside, models]);
    const tricks: Record<string, unknown> = {};
    for (const type of ["linked", "symlink", "dotx"]) {
      const s = await terminal(await submit(type));
      tricks[type] = { status: s.status, failure_reason: s.failure_reason, model: s.model_path };
    }
    const symlinkAccepted = (tricks.symlink as { status: string }).status === "completed";
    const after = await snapshot([outside, models]);
    const changed = [...before].filter(([k, v]) => after.get(k) !== v).map(([k]) => k);
    figures.artifact_tricks = {
      ...tricks,
      symlink_model_accepted: symlinkAccepted,
      changed_or_removed: changed,
    };
    figures.files_outside_untouched = !changed.some((p) => p.startsWith(outside));
    figures.other_models_untouched = !changed.some((p) => p.startsWith(models));
    log(`artifact tricks: ${JSON.stringify(figures.artifact_tricks)}`);
    mark("artifact_tricks");

    const daemonJob = await submit("daemon");
    const daemon = await terminal(daemonJob);
    // The job has ended; give a kill of strays a moment to land before counting.
    await new Promise((r) => setTimeout(r, 1000));
    const left = jobProcesses(jobIds);
    figures.escaped_daemon = { status: daemon.status, processes_left: left.size };
    figures.processes_left = left.size;
    for (const pid of left.keys()) Deno.kill(pid, "SIGKILL");
    log(`escaped daemon: ${JSON.stringify(figures.escaped_daemon)}`);
  } finally {
    const m = rss.stop();
    figures.server_rss_peak_mb = Math.round(Math.max(m.maxRss, m.peak));
    await server.stop();
    for (const pid of jobProcesses(jobIds).keys()) Deno.kill(pid, "SIGKILL");
  }
  const failures = verdict(figures);
  if (failures.length) throw new DrillFailure(failures.join("; "), figures);
  return figures;
}

/** Runs the flood with a job queued behind it; the slot must come free. */
async function flood(
  lines: number,
  submit: (type: string) => Promise<string>,
  status: (id: string) => Promise<Json>,
  terminal: (id: string, ms?: number) => Promise<Json>,
  api: (method: string, path: string) => Promise<Json>,
) {
  const t0 = performance.now();
  const id = await submit("flood");
  const next = await submit("fine");
  const job = await terminal(id);
  const ended = (performance.now() - t0) / 1000;
  const after = await terminal(next, 30_000);
  const nextStarted = after.started_at ? Date.parse(after.started_at) : NaN;
  const logLines: string[] = [];
  for (let a = 0;;) {
    const page = await api("GET", `/train/logs/${id}?after=${a}&limit=1000`);
    if (!page.entries?.length) break;
    for (const e of page.entries) logLines.push(...e.lines);
    a = page.next_after;
  }
  const inOrder = logLines.length === lines / 100 &&
    logLines.every((l, i) => l === `log ${(i + 1) * 100}`);
  let progressEvents = 0;
  for (let a = 0;;) {
    const page = await api("GET", `/train/job/${id}/events?type=progress&after=${a}&limit=1000`);
    if (!page.events?.length) break;
    progressEvents += page.events.length;
    a = page.next_after;
  }
  const s = await status(id);
  return {
    lines,
    status: job.status,
    wedged: !!job.wedged,
    last_progress_step: s.progress?.step ?? null,
    progress_events: progressEvents,
    log_lines_in_order: inOrder,
    seconds_to_end: Math.round(ended * 10) / 10,
    slot_freed: after.status === "completed",
    slot_freed_s: Number.isNaN(nextStarted)
      ? null
      : Math.round((nextStarted - Date.parse(s.created_at)) / 100) / 10,
  };
}

/** Path -> size and content of small files, for every file under `dirs` (not following links). */
async function snapshot(dirs: string[]): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const dir of dirs) {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile) continue;
      const path = join(dir, e.name);
      found.set(path, await Deno.readTextFile(path).catch(() => "(unreadable)"));
    }
  }
  return found;
}

/** What the drill requires; each failed check is named with its measured value. */
function verdict(f: Record<string, Json>): string[] {
  const failures: string[] = [];
  if (!f.flood?.slot_freed || f.flood?.wedged) failures.push("the flood wedged its slot");
  if (f.flood && f.flood.last_progress_step !== f.flood.lines) {
    failures.push(`last progress ${f.flood.last_progress_step} of ${f.flood.lines}`);
  }
  if (f.flood && !f.flood.log_lines_in_order) failures.push("flood log lines lost or reordered");
  if (f.deep_json?.wedged) failures.push("the deep JSON line wedged its job");
  if (f.huge_line?.wedged) failures.push("the huge line wedged its job");
  if (f.server_rss_peak_mb > RSS_LIMIT_MB) {
    failures.push(`server RSS peaked at ${f.server_rss_peak_mb} MB (limit ${RSS_LIMIT_MB})`);
  }
  if (f.files_outside_untouched === false) failures.push("files outside MODELS_DIR were changed");
  if (f.other_models_untouched === false) failures.push("other jobs' models were changed");
  if (f.artifact_tricks?.symlink_model_accepted) {
    failures.push("a model file that is a symlink out of MODELS_DIR was accepted");
  }
  if (f.processes_left !== 0) failures.push(`${f.processes_left} job processes left running`);
  return failures;
}
