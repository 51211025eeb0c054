/** The jobs table: filters, paging, and live updates (the event stream, else polling). */
import { api, ApiError, follow } from "./api.js";
import {
  badge,
  duration,
  el,
  headline,
  number,
  percent,
  runTime,
  shortId,
  TERMINAL,
  when,
} from "./format.js";
import { every, notice, setLive } from "./live.js";
import { fillTypeSelect } from "./types.js";

const PAGE = 25;
const POLL_MS = 1000;
const state = { status: "", model_type: "", offset: 0, total: 0 };
let wired = false;

/** Shows the table and keeps it current; returns the function that stops that. */
export function showJobs() {
  wire();
  const stop = new AbortController();
  let streaming = false;
  let active = true;
  const refresh = async () => {
    active = await load();
  };
  // A burst of events (a stream may start with a backlog) costs one reload, not one each.
  let soon = null;
  const refreshSoon = () => {
    soon ??= setTimeout(() => {
      soon = null;
      refresh();
    }, 200);
  };
  const listen = async () => {
    let after = await streamStart().catch(() => 0);
    while (!stop.signal.aborted) {
      streaming = true;
      setLive("live: event stream");
      const found = await follow("/train/stream", {
        after,
        signal: stop.signal,
        onEvent: (_type, _event, id) => {
          if (id) after = Number(id);
          refreshSoon();
        },
      }).catch(() => true);
      streaming = false;
      if (!found) break;
      await new Promise((r) => setTimeout(r, 3000));
    }
    if (!stop.signal.aborted) setLive("live: polling every second");
  };
  let first = true;
  const stopPolling = every(POLL_MS, async () => {
    // The stream says when jobs appear or finish; progress still needs a look while any runs.
    if (first || !streaming || active) await refresh();
    if (!first) return;
    // Only once the rows are on screen: the first page is what a person waits for.
    first = false;
    fillTypeSelect(document.getElementById("f-type"), { withAll: true });
    listen();
  });
  return () => {
    stop.abort();
    stopPolling();
    clearTimeout(soon);
  };
}

/**
 * Where the stream should start: just before the newest job's submission. Whatever changed
 * since the table was loaded comes after that point (a job submitted meanwhile is that newest
 * one), so the stream replays a few events rather than the whole history.
 */
async function streamStart() {
  const head = await api("/train/jobs?limit=1");
  const newest = head.jobs[0];
  if (!newest) return 0;
  const q = "type=submitted&limit=1";
  const events = await api(`/train/job/${newest.job_id}/events?${q}`);
  return Math.max(0, (events.events[0]?.seq ?? 1) - 1);
}

function wire() {
  if (wired) return;
  wired = true;
  const filters = document.getElementById("filters");
  filters.addEventListener("change", () => {
    const data = new FormData(filters);
    state.status = String(data.get("status") ?? "");
    state.model_type = String(data.get("model_type") ?? "");
    state.offset = 0;
    load();
  });
  document.getElementById("prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE);
    load();
  });
  document.getElementById("next").addEventListener("click", () => {
    if (state.offset + PAGE < state.total) state.offset += PAGE;
    load();
  });
}

/** Loads the current page; resolves true when any job on it can still change. */
async function load() {
  const q = new URLSearchParams({ limit: String(PAGE), offset: String(state.offset) });
  if (state.status) q.set("status", state.status);
  if (state.model_type) q.set("model_type", state.model_type);
  let page;
  try {
    page = await api(`/train/jobs?${q}`);
  } catch (e) {
    if (e instanceof ApiError && e.status !== 401) notice(`Could not list jobs: ${e.message}`);
    return false;
  }
  state.total = page.filtered_count;
  render(page);
  return page.jobs.some((j) => !TERMINAL.has(j.status));
}

function render(page) {
  const from = page.jobs.length ? state.offset + 1 : 0;
  const to = state.offset + page.jobs.length;
  const filtered = page.filtered_count !== page.total_count ? ` (${page.total_count} in all)` : "";
  document.getElementById("jobs-count").textContent = `${page.filtered_count} job${
    page.filtered_count === 1 ? "" : "s"
  }${filtered}`;
  document.getElementById("page-info").textContent = `${from}–${to} of ${page.filtered_count}`;
  document.getElementById("prev").disabled = state.offset === 0;
  document.getElementById("next").disabled = to >= page.filtered_count;

  const body = document.getElementById("jobs-body");
  if (!page.jobs.length) {
    body.replaceChildren(
      el("tr", {}, el("td", { colspan: 7, class: "empty", text: "No jobs match these filters." })),
    );
    return;
  }
  // Rows are updated in place, so a link that has the keyboard focus keeps it.
  const old = new Map([...body.rows].map((r) => [r.dataset.jobId, r]));
  const rows = page.jobs.map((job) => {
    const row = old.get(job.job_id) ?? newRow(job.job_id);
    fillRow(row, job);
    return row;
  });
  const same = rows.length === body.rows.length && rows.every((r, i) => body.rows[i] === r);
  if (!same) body.replaceChildren(...rows);
}

function newRow(id) {
  const row = el("tr", { "data-job-id": id });
  const link = el("a", { href: `#/job/${id}`, title: id, text: shortId(id) });
  const bar = el("progress", { max: 1, "aria-label": `progress of job ${shortId(id)}` });
  row.append(
    el("td", {}, el("span", { class: "badge" })),
    el("td", { class: "id" }, link),
    el("td", { class: "type" }),
    el("td", { class: "created" }),
    el("td", { class: "duration num" }),
    el("td", { class: "progress" }, bar, el("span", { class: "steps" })),
    el("td", { class: "metric" }),
  );
  return row;
}

function fillRow(row, job) {
  const [status, , type, created, dur, progress, metric] = row.cells;
  badge(status.firstChild, job.status);
  type.textContent = job.model_type + (job.parent_id ? " (part of all)" : "");
  created.textContent = when(job.created_at);
  dur.textContent = job.status === "started"
    ? "waiting"
    : job.status === "completed" && !job.started_at
    ? "reused"
    : duration(runTime(job));
  const bar = progress.querySelector("progress");
  const steps = progress.querySelector(".steps");
  const p = job.progress;
  if (job.status === "completed") {
    bar.value = 1;
    steps.textContent = "done";
  } else if (p?.total) {
    bar.value = Math.min(1, p.step / p.total);
    // An `all` parent counts in units of its children's shares: a percentage says it plainly.
    steps.textContent = job.model_type === "all" ? `${percent(p)}%` : `${p.step}/${p.total}`;
  } else {
    if (job.status === "running") bar.removeAttribute("value");
    else bar.value = 0;
    steps.textContent = "";
  }
  const h = headline(job.metrics);
  metric.textContent = h ? `${h.name} ${number(h.value)}` : "—";
}
