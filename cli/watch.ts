/**
 * `watch`: follows a job's event stream to its end and shows it three ways: progress bars
 * on a terminal (one per child for `all`), plain lines otherwise, or JSON lines with --json.
 * The exit code tells how the job ended.
 */
import cliProgress from "cli-progress";
import process from "node:process";
import { type Api, exitFor, type Json } from "./api.ts";
import { clock, metricsText, stepText } from "./format.ts";

/** What the events say about one job (a bar, or a name on plain lines). */
interface Track {
  name: string;
  step: number;
  total: number;
  metrics: Json;
  status: string;
}

export interface View {
  /** Called with each job event (never with `end`). */
  event(track: Track, type: string, event: Json): void;
  /** Called once with the final status data. */
  end(status: Json): void;
  /** The stream dropped and is being reopened. */
  retry(error: unknown): void;
}

/** The events a watcher needs; log lines stay out (see `logs --follow`). */
const TYPES = ["submitted", "started", "progress", "metrics", "warning", "completed", "failed"]
  .concat(["cancelled", "requeued"]);

/** Follows `jobId` to its end; returns the exit code for its final status. */
export async function watch(api: Api, jobId: string, mode: "bars" | "lines" | "json") {
  const first = await api.status(jobId);
  const tracks = new Map<string, Track>();
  const jobs = first.children?.length ? first.children : [first];
  for (const j of jobs) {
    tracks.set(j.job_id, { name: j.model_type, step: 0, total: 0, metrics: {}, status: j.status });
  }
  const view = mode === "json" ? jsonView() : mode === "bars" ? barsView(tracks) : linesView();
  if (mode === "lines") console.log(`watching job ${jobId} (${first.model_type})`);
  for await (const m of api.stream(jobId, { types: TYPES, onRetry: (e) => view.retry(e) })) {
    if (m.event === "end") {
      const status = JSON.parse(m.data);
      view.end(status);
      return exitFor(status.status);
    }
    const e = JSON.parse(m.data);
    const track = tracks.get(e.job_id);
    if (!track) continue; // the parent's own `submitted`: its children tell the story
    apply(track, e);
    view.event(track, m.event, e);
  }
  throw new Error("the stream ended without an end event");
}

function apply(t: Track, e: Json): void {
  const d = e.data;
  if (e.type === "progress") {
    if (typeof d.step === "number") t.step = d.step;
    if (typeof d.total === "number") t.total = d.total;
    if (d.metrics) t.metrics = d.metrics;
  } else if (e.type === "metrics") {
    t.metrics = d.metrics;
  } else if (e.type === "started") {
    t.status = "running";
  } else if (e.type === "requeued") {
    // The attempt ended without a result (hosted mode): the job waits for a worker again.
    t.status = "waiting";
    t.step = 0;
    t.metrics = {};
  } else if (["completed", "failed", "cancelled"].includes(e.type)) {
    t.status = e.type;
  }
}

/** One line per event, for logs and pipes. */
function linesView(): View {
  return {
    event(t, type, e) {
      const d = e.data;
      const at = clock(e.at);
      const text = type === "started"
        ? `started (pid ${d.pid})`
        : type === "progress"
        ? `progress ${stepText(d)}${d.message ? ` ${d.message}` : ""} ${metricsText(d.metrics)}`
        : type === "metrics"
        ? `metrics ${metricsText(d.metrics)}`
        : type === "warning"
        ? `warning: ${d.message}`
        : type === "completed"
        ? `completed ${d.model_path ?? ""}`
        : type === "failed"
        ? `failed (${d.failure_reason}): ${d.error}`
        : type === "cancelled"
        ? `cancelled: ${d.reason}`
        : type === "requeued"
        ? `requeued: ${requeueText(d)}`
        : type;
      console.log(`${at}  ${t.name.padEnd(14)} ${text.trimEnd()}`);
    },
    end(status) {
      console.log(endLine(status));
    },
    retry(error) {
      console.error(`stream dropped (${errorText(error)}); reconnecting`);
    },
  };
}

/** Each stream message as one JSON line; `end` carries the final status. */
function jsonView(): View {
  return {
    event(_t, type, e) {
      console.log(JSON.stringify({ event: type, ...e }));
    },
    end(status) {
      console.log(JSON.stringify({ event: "end", data: status }));
    },
    retry(error) {
      console.error(`stream dropped (${errorText(error)}); reconnecting`);
    },
  };
}

/** A live bar per job with step, ETA and the latest metrics. */
function barsView(tracks: Map<string, Track>): View {
  const bars = new cliProgress.MultiBar({
    stream: process.stdout,
    // What matters most comes first: a narrow terminal cuts the end of the line.
    format: "{name} {state} {bar} {percentage}% {value}/{total} ETA {eta_formatted} {metrics}",
    barsize: 24,
    formatTime: etaText,
    hideCursor: true,
    clearOnComplete: false,
    stopOnComplete: false,
    autopadding: true,
    etaBuffer: 20,
    fps: 10,
  }, cliProgress.Presets.shades_classic);
  const width = Math.max(...[...tracks.values()].map((t) => t.name.length));
  const byTrack = new Map<Track, cliProgress.SingleBar>();
  for (const t of tracks.values()) {
    byTrack.set(t, bars.create(t.total || 1, t.step, payload(t, width)));
  }
  return {
    event(t, type, e) {
      // A bar shows the state; why an attempt ended needs words above the bars.
      if (type === "requeued") bars.log(`${t.name} requeued: ${requeueText(e.data)}\n`);
      const bar = byTrack.get(t)!;
      const done = t.status === "completed";
      bar.setTotal(t.total || 1);
      bar.update(done ? t.total || 1 : t.step, payload(t, width));
    },
    end(status) {
      bars.stop();
      console.log(endLine(status));
    },
    retry(error) {
      bars.log(`stream dropped (${errorText(error)}); reconnecting\n`);
    },
  };
}

/** `7s`, `2m05s`; "-" while there is nothing to estimate from. */
function etaText(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "-";
  const s = Math.round(seconds);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

function payload(t: Track, width: number) {
  return {
    name: t.name.padEnd(width),
    state: t.status.padEnd(9),
    metrics: metricsText(t.metrics, 4),
  };
}

/** Why a requeued job's attempt ended, and that it waits again. */
function requeueText(d: Json): string {
  const worker = d.worker_name ?? d.worker_id;
  const why = d.reason === "worker_stopped"
    ? `worker ${worker} shut down`
    : `worker ${worker} was lost`;
  return `attempt ${d.attempt} ended (${why}); waiting for a worker`;
}

function endLine(s: Json): string {
  const what = s.status === "completed"
    ? s.model_path ? `model ${s.model_path}` : "all models trained"
    : s.status === "failed"
    ? `${s.failure_reason ?? "failed"}: ${s.error ?? ""}`
    : s.message;
  return `job ${s.job_id} ${s.status}: ${what}`.trimEnd();
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
