/** Plain-text formatting for the client: tables, times, metrics, sizes. */
import type { Json } from "./api.ts";

/** Left-aligned columns separated by two spaces; the header in capitals. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join("\n");
}

/** `HH:MM:SS` (UTC) of an ISO time, or "-". */
export function clock(iso: string | null | undefined): string {
  return iso ? iso.slice(11, 19) : "-";
}

/** `2025-01-01 12:00:00` (UTC) of an ISO time, or "-". */
export function when(iso: string | null | undefined): string {
  return iso ? `${iso.slice(0, 10)} ${iso.slice(11, 19)}` : "-";
}

/**
 * `loss=0.25 accuracy=0.97`: the numeric metrics (spreads and sample counts left out),
 * rounded to 4 significant digits; at most `max` of them.
 */
export function metricsText(metrics: Json, max = Infinity): string {
  if (!metrics || typeof metrics !== "object") return "";
  return Object.entries(metrics)
    .filter(([k, v]) => typeof v === "number" && !/(_std|^n_\w+|_folds)$/.test(k))
    .slice(0, max)
    .map(([k, v]) => `${k}=${Number((v as number).toPrecision(4))}`)
    .join(" ");
}

/** `3/10` or "-". */
export function stepText(progress: Json, modelType?: string): string {
  if (!progress || progress.step === null || progress.step === undefined) return "-";
  // An `all` parent counts in units of its children's shares: a percentage says it plainly.
  if (modelType === "all" && progress.total) {
    return `${Math.floor((100 * progress.step) / progress.total)}%`;
  }
  return progress.total ? `${progress.step}/${progress.total}` : String(progress.step);
}

/** `1.2 MB` */
export function sizeText(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let n = bytes / 1024;
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n.toFixed(1)} ${units[u]}`;
}
