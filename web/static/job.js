/** One job: status, failure, progress with ETA, metric charts, the live log, children, Cancel. */
import { api, ApiError, follow } from "./api.js";
import { drawCharts } from "./chart.js";
import {
  badge,
  duration,
  el,
  metricsText,
  percent,
  runTime,
  shortId,
  TERMINAL,
  when,
} from "./format.js";
import { every, notice, setLive } from "./live.js";

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);
/** The job on screen; the Cancel button and dialog are wired once and act on it. */
let current = null;
let wired = false;

/** Shows job `id` and follows it; returns the function that stops following. */
export function showJob(id) {
  wire();
  const view = {
    id,
    job: null,
    points: [],
    logAfter: 0,
    eventsAfter: 0,
    pending: null,
    stale: false,
    drawn: 0,
  };
  current = view;
  $("job-title").textContent = `Job ${shortId(id)}`;
  $("job-log").textContent = "";
  $("job-chart").replaceChildren();
  const stop = new AbortController();
  let stopPolling = () => {};
  const poll = () => {
    setLive("live: polling every second");
    stopPolling = every(POLL_MS, async () => {
      const wasDone = view.job && TERMINAL.has(view.job.status);
      await Promise.all([loadStatus(view), loadProgress(view), loadLog(view)]);
      // One more round after the end, so the last log lines and events are in.
      if (wasDone) {
        stopPolling();
        setLive("");
      }
    });
  };
  loadStatus(view).then(async () => {
    if (stop.signal.aborted || !view.job) return;
    // Follows the job's stream, resuming after the last event seen, until its `end`: a
    // dropped connection (or a server restart) neither repeats nor loses a line.
    let after = 0;
    let ended = false;
    while (!stop.signal.aborted && !ended) {
      setLive("live: event stream");
      const found = await follow(`/train/job/${id}/stream`, {
        after,
        signal: stop.signal,
        onEvent: (type, e, seq) => {
          if (seq) after = Number(seq);
          if (type === "end") ended = true;
          onStreamEvent(view, type, e);
        },
      }).catch(() => true);
      if (!found) {
        // No streams on this server: poll from where the stream left off.
        view.logAfter = view.eventsAfter = after;
        if (!stop.signal.aborted) poll();
        return;
      }
      if (!ended) await new Promise((r) => setTimeout(r, 3000));
    }
    if (!stop.signal.aborted) setLive("");
  });
  return () => {
    stop.abort();
    stopPolling();
    if (current === view) current = null;
  };
}

function onStreamEvent(view, type, e) {
  if (type === "end") {
    renderStatus(view, e);
    return;
  }
  // A parent's stream carries its children's events too: theirs only change its children list.
  const own = e.job_id === view.id;
  if (own && type === "log") {
    appendLog(e.data.lines);
  } else if (own && type === "progress") {
    view.points.push({ ...e.data, at: e.at });
    renderProgress(view);
    drawCharts($("job-chart"), view.points);
  } else if (type !== "log" && type !== "progress") {
    // Status changes are rare: a fresh status view is simpler than folding events in here.
    reloadStatus(view);
  }
}

/** Loads the status once at a time; a change seen meanwhile asks for one more load. */
function reloadStatus(view) {
  if (view.pending) {
    view.stale = true;
    return;
  }
  view.stale = false;
  view.pending = loadStatus(view).finally(() => {
    view.pending = null;
    if (view.stale) reloadStatus(view);
  });
}

async function loadStatus(view) {
  try {
    const body = await api(`/train/status/${view.id}`);
    if (current === view) renderStatus(view, body.data);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) notice(`No job with id ${view.id}.`);
    else if (!(e instanceof ApiError && e.status === 401)) notice(`Could not load: ${e.message}`);
  }
}

/** Pages read per poll: a long history is caught up in a few seconds, not one page a second. */
const PAGES_PER_POLL = 20;
/** The log view keeps about this much text; all of it stays at GET /train/logs. */
const MAX_LOG_CHARS = 400_000;

async function loadProgress(view) {
  for (let i = 0; i < PAGES_PER_POLL; i++) {
    const q = `type=progress&limit=1000&after=${view.eventsAfter}`;
    const body = await api(`/train/job/${view.id}/events?${q}`);
    if (current !== view || !body.events.length) break;
    view.eventsAfter = body.next_after;
    for (const e of body.events) view.points.push({ ...e.data, at: e.at });
    if (body.events.length < 1000) break;
  }
  renderProgress(view);
  if (view.drawn === view.points.length && view.drawn !== 0) return;
  view.drawn = view.points.length;
  drawCharts($("job-chart"), view.points);
}

async function loadLog(view) {
  for (let i = 0; i < PAGES_PER_POLL; i++) {
    const body = await api(`/train/logs/${view.id}?limit=1000&after=${view.logAfter}`);
    if (current !== view) return;
    view.logAfter = body.next_after;
    appendLog(body.entries.flatMap((e) => e.lines));
    if (body.entries.length < 1000) return;
  }
}

function appendLog(lines) {
  if (!lines.length) return;
  const log = $("job-log");
  log.append(`${lines.join("\n")}\n`);
  if (log.textContent.length > MAX_LOG_CHARS) {
    const kept = log.textContent.slice(-MAX_LOG_CHARS / 2);
    log.textContent = `[earlier lines left out here; GET /train/logs/{id} has them all]\n${
      kept.slice(kept.indexOf("\n") + 1)
    }`;
  }
  if ($("follow").checked) log.scrollTop = log.scrollHeight;
}

function renderStatus(view, job) {
  view.job = job;
  badge($("job-status"), job.status);
  $("job-title").textContent = `Job ${shortId(job.job_id)} · ${job.model_type}`;
  $("job-message").textContent = job.message ?? "";
  $("cancel").hidden = TERMINAL.has(job.status);
  const failed = job.status === "failed" || (job.status === "cancelled" && job.error);
  $("job-failure").hidden = !failed;
  $("job-reason").textContent = job.failure_reason ?? job.status;
  $("job-error").textContent = job.error ?? "";
  renderFacts(job);
  renderChildren(job);
  renderProgress(view);
}

function renderProgress(view) {
  const job = view.job;
  if (!job) return;
  const last = view.points.at(-1) ?? job.progress;
  const bar = $("job-progress");
  const text = $("job-progress-text");
  if (job.status === "completed") {
    bar.value = 1;
    text.textContent = `done in ${duration(runTime(job))}`;
  } else if (last?.total) {
    bar.value = Math.min(1, last.step / last.total);
    const eta = TERMINAL.has(job.status) ? "" : etaText(view.points, last);
    const done = job.model_type === "all"
      ? `${percent(last)}% of its children's work`
      : `step ${last.step} of ${last.total}`;
    text.textContent = `${done}${eta}${last.message ? ` · ${last.message}` : ""}`;
  } else {
    if (job.status === "running") bar.removeAttribute("value");
    else bar.value = 0;
    text.textContent = job.status === "started" ? "waiting for a free slot" : job.status;
  }
}

/** ETA from the rate between the first and the last progress report. */
function etaText(points, last) {
  const first = points.find((p) => p.step !== null && p.at);
  if (!first || !last.at || last.step <= first.step) return "";
  const rate = (last.step - first.step) / (Date.parse(last.at) - Date.parse(first.at));
  if (!(rate > 0)) return "";
  return ` · about ${duration((last.total - last.step) / rate)} left`;
}

function renderFacts(job) {
  const p = job.process;
  const facts = [
    ["Job id", job.job_id],
    ["Created", when(job.created_at)],
    ["Started", when(job.started_at)],
    ["Finished", when(job.completed_at)],
    ["Run time", duration(runTime(job))],
    [
      "Options",
      `retrain ${job.retrain ? "yes" : "no"}, cross-validation ${
        job.use_cv ? "yes" : "no"
      }, limit ${duration(job.timeout_seconds * 1000)}`,
    ],
    ["Hyperparameters", JSON.stringify(job.hyperparameters ?? {})],
    [
      "Metrics",
      metricsText(job.metrics) || "—",
    ],
    ["Model file", job.model_path ?? "—"],
    [
      "Process",
      p ? processText(p) : job.children ? "none: it runs as its children" : "not started",
    ],
  ];
  if (job.parent_id) facts.splice(1, 0, ["Part of", job.parent_id]);
  $("job-facts").replaceChildren(...facts.flatMap(([k, v]) => {
    const dd = el("dd", {}, k === "Part of" ? el("a", { href: `#/job/${v}`, text: v }) : v);
    return [el("dt", { text: k }), dd];
  }));
}

function processText(p) {
  const where = p.worker_id ? ` on ${p.worker_id}` : "";
  const end = p.alive
    ? "running"
    : `exited${p.exit_code !== null ? ` with code ${p.exit_code}` : ""}${
      p.signal ? ` by ${p.signal}` : ""
    }`;
  return `pid ${p.pid} (group ${p.pgid})${where}, ${end}`;
}

function renderChildren(job) {
  $("job-children").hidden = !job.children;
  if (!job.children) return;
  $("children-list").replaceChildren(...job.children.map((c) => {
    const b = el("span");
    badge(b, c.status);
    const steps = c.progress?.total ? ` · step ${c.progress.step}/${c.progress.total}` : "";
    return el(
      "li",
      {},
      b,
      " ",
      el("a", { href: `#/job/${c.job_id}`, text: c.model_type }),
      ` ${shortId(c.job_id)}${steps}`,
    );
  }));
}

function wire() {
  if (wired) return;
  wired = true;
  const dialog = $("confirm-cancel");
  $("cancel").addEventListener("click", () => {
    dialog.returnValue = "";
    dialog.showModal();
  });
  dialog.addEventListener("close", async () => {
    const view = current;
    if (dialog.returnValue !== "cancel" || !view) return;
    try {
      await api(`/train/job/${view.id}`, { method: "DELETE" });
      await loadStatus(view);
      $("main").focus();
    } catch (e) {
      notice(`Could not cancel: ${e.message}`);
    }
  });
}
