/** Small formatting and DOM helpers shared by the views. */

/** Creates an element with attributes (`text` sets textContent) and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** The contract calls a waiting job "started"; people read it better as "queued". */
export function statusLabel(status) {
  return status === "started" ? "queued" : status;
}

export function badge(node, status) {
  node.className = `badge s-${status}`;
  node.textContent = statusLabel(status);
}

/** Local time as 2026-01-31 14:05:09; the date is left out for today. */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  const time = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  if (new Date().toDateString() === d.toDateString()) return time;
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${time}`;
}

export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return "—";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

/** Time spent running: to completion, or until now while it runs. */
export function runTime(job) {
  if (!job.started_at) return null;
  const end = job.completed_at ? Date.parse(job.completed_at) : Date.now();
  return end - Date.parse(job.started_at);
}

const PREFERRED = ["accuracy", "r2", "f1", "roc_auc", "cv_mean", "rmse", "mae", "loss"];

/** The one metric worth a column: a well-known one first, else the first number. */
export function headline(metrics) {
  if (!metrics) return null;
  const numeric = Object.entries(metrics).filter(([, v]) => typeof v === "number");
  const found = PREFERRED.map((k) => numeric.find(([n]) => n === k)).find(Boolean) ??
    numeric[0];
  return found ? { name: found[0], value: found[1] } : null;
}

/**
 * Metrics as text: `accuracy 0.95, f1 0.9`. An `all` job holds its children's, one object per
 * type: `xgboost: accuracy 0.95; neural-net: loss 0.1`. Any other object value is its JSON.
 */
export function metricsText(metrics) {
  const entries = Object.entries(metrics ?? {});
  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const flat = (m) =>
    Object.entries(m).map(([k, v]) =>
      `${k} ${typeof v === "object" ? JSON.stringify(v) : number(v)}`
    )
      .join(", ");
  if (entries.length && entries.every(([, v]) => isObject(v))) {
    return entries.map(([type, m]) => `${type}: ${flat(m) || "—"}`).join("; ");
  }
  return flat(metrics ?? {});
}

/** An `all` parent's progress (units of its children's shares) as a whole percentage. */
export function percent(progress) {
  return Math.floor((100 * progress.step) / progress.total);
}

export function number(v) {
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function shortId(id) {
  return id.slice(0, 8);
}
