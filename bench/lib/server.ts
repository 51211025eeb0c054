/**
 * Starts the real server process the way `deno task serve` does, on its own temporary
 * database and models folder, and finds its address from the `listening on` line.
 */
import { fileURLToPath } from "node:url";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));
/** The checkout whose main.ts is served: this one, or BENCH_REPO (to measure a scratch copy). */
export const SERVED_REPO = Deno.env.get("BENCH_REPO") || REPO;

export interface ServerOptions {
  /** Folder for the database and models (created by the caller, removed by the caller). */
  dir: string;
  /** Database file path; defaults to `${dir}/trainer.db`. */
  dbPath?: string;
  env?: Record<string, string>;
  /** Deadline for the listen line, ms. */
  startTimeoutMs?: number;
}

export interface Server {
  url: string;
  pid: number;
  dbPath: string;
  child: Deno.ChildProcess;
  /** Everything the server printed so far (stdout and stderr). */
  output: string[];
  /** Resolves with the exit status once the process ends. */
  status: Promise<Deno.CommandStatus>;
  /** SIGTERM and wait for the exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<Deno.CommandStatus>;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<Deno.CommandStatus>;
}

/** Starts `deno run --allow-all --frozen main.ts` with PORT=0 and waits until it listens. */
export async function startServer(opts: ServerOptions): Promise<Server> {
  const dbPath = opts.dbPath ?? `${opts.dir}/trainer.db`;
  const child = new Deno.Command("deno", {
    args: ["run", "--allow-all", "--frozen", "main.ts"],
    cwd: SERVED_REPO,
    env: {
      PORT: "0",
      HOST: "127.0.0.1",
      API_TOKEN: "",
      DATABASE_URL: `file:${dbPath}`,
      MODELS_DIR: `${opts.dir}/models`,
      MAX_CONCURRENT_JOBS: "2",
      ...opts.env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output: string[] = [];
  let onLine: ((line: string) => void) | null = null;
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const lines = stream.pipeThrough(new TextDecoderStream()).pipeThrough(lineSplitter());
    for await (const line of lines) {
      if (output.length < 10_000) output.push(line);
      onLine?.(line);
    }
  };
  const reading = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const status = child.status.then(async (s) => {
    await reading.catch(() => {});
    return s;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server did not listen in time:\n${output.join("\n")}`)),
      opts.startTimeoutMs ?? 60_000,
    );
    const found = (line: string) => /listening on (http:\/\/\S+)/.exec(line)?.[1];
    onLine = (line) => {
      const u = found(line);
      if (u) {
        clearTimeout(timer);
        resolve(u);
      }
    };
    for (const line of output) onLine(line);
    status.then((s) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${s.code}) before listening:\n${output.join("\n")}`));
    });
  });
  onLine = null;
  const stop = async (graceMs = 15_000) => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, graceMs);
    const s = await status;
    clearTimeout(timer);
    return s;
  };
  const kill = async () => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    return await status;
  };
  return { url, pid: child.pid, dbPath, child, output, status, stop, kill };
}

/** Splits a text stream into lines. */
export function lineSplitter(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const p of parts) controller.enqueue(p);
    },
    flush(controller) {
      if (rest) controller.enqueue(rest);
    },
  });
}

/** Writes a MODEL_REGISTRY file in `dir` and returns its path. */
export async function writeRegistry(
  dir: string,
  types: Record<string, { command: string[]; env?: string[]; extension?: string }>,
): Promise<string> {
  const path = `${dir}/registry.json`;
  await Deno.writeTextFile(path, JSON.stringify(types, null, 2));
  return path;
}

/** Polls `check` until it returns a value other than undefined, or throws at the deadline. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
