/** The machine a benchmark ran on, and the result files. */
import { REPO } from "./server.ts";

export interface Machine {
  nproc: number;
  memory_mb: number;
  cpu_model: string;
  deno: string;
  v8: string;
  os: string;
  date: string;
  /** /proc/loadavg when the result was written: other work on the machine skews figures. */
  loadavg: string;
}

/** Reads nproc, memory and CPU model from /proc, and the Deno version. */
export function machine(): Machine {
  const cpuinfo = readOr("/proc/cpuinfo");
  const meminfo = readOr("/proc/meminfo");
  const kb = Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1] ?? 0);
  return {
    nproc: navigator.hardwareConcurrency,
    memory_mb: Math.round(kb / 1024),
    cpu_model: /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    date: new Date().toISOString(),
    loadavg: readOr("/proc/loadavg").trim(),
  };
}

function readOr(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

export interface Check {
  figure: string;
  value: number;
  unit: string;
  target: string;
  pass: boolean;
}

export interface BenchResult {
  name: string;
  checks: Check[];
  /** Everything else worth keeping: settings, counts, tool used. */
  details: Record<string, unknown>;
}

/** Writes `bench/results/<name>.json` with the machine and returns its path. */
export async function writeResult(result: BenchResult): Promise<string> {
  const dir = `${REPO}bench/results`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${result.name}.json`;
  const body = {
    ...result,
    pass: result.checks.every((c) => c.pass),
    machine: machine(),
    command: `deno task bench ${result.name}`,
  };
  await Deno.writeTextFile(path, JSON.stringify(body, null, 2) + "\n");
  return path;
}

/** One table row per check. */
export function formatRows(result: BenchResult): string[] {
  return result.checks.map((c) =>
    [
      result.name.padEnd(10),
      c.figure.padEnd(34),
      `${fmt(c.value)} ${c.unit}`.padEnd(16),
      c.target.padEnd(14),
      c.pass ? "pass" : "FAIL",
    ].join(" | ")
  );
}

function fmt(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
}

/** The p-th percentile (0..100) of `values`, nearest rank. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}
