/**
 * End-to-end test helpers: a real `deno run main.ts` server process on its own temp dir,
 * database and port; HTTP helpers; polling with deadlines; process-group liveness read from
 * /proc (zombies do not count as alive: a slow init may take seconds to reap an orphan).
 */
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const PYTHON = "/usr/bin/python3";
/** Generous: CI machines have two cores and run test files in parallel. */
export const START_MS = 60_000;

/** Variables the server reads; cleared from the inherited environment so tests stay hermetic. */
const SERVER_VARS = ("PORT HOST DATABASE_URL DATABASE_AUTH_TOKEN MODELS_DIR MODEL_REGISTRY " +
  "MAX_CONCURRENT_JOBS CANCEL_GRACE_SECONDS JOB_TIMEOUT_SECONDS API_TOKEN METRICS_TOKEN ALLOW_INSECURE " +
  "TRAIN_PYTHON LOG_TAIL_LINES CORS_ORIGINS DATASET_PATH DATASET_TARGET DATASET_TASK " +
  "ALLOWED_HOSTS LOG_TAIL_BYTES LOG_PAGE_BYTES BODY_TIMEOUT_SECONDS MAX_STREAMS SSE_PING_SECONDS " +
  "TRAINER_URL TRAINER_TOKEN WORKERS WORKER_TOKEN LEASE_SECONDS WORKER_NAME " +
  "ARTIFACT_STORE S3_ENDPOINT S3_FORCE_PATH_STYLE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY " +
  "AWS_SESSION_TOKEN AWS_REGION").split(" ");

/** A parsed JSON body: tests read fields freely and assert on them. */
// deno-lint-ignore no-explicit-any
export type Json = any;

export interface Reply {
  status: number;
  headers: Headers;
  body: Json;
}

/** A temp dir holding one test's database, models and scripts; `env` points the server at it. */
export class Workspace {
  private constructor(readonly dir: string) {}

  static async create(): Promise<Workspace> {
    return new Workspace(await Deno.makeTempDir({ prefix: "trainer_e2e_" }));
  }

  get modelsDir(): string {
    return join(this.dir, "models");
  }

  /** The server environment for this workspace, with `extra` over it. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return {
      PORT: "0",
      DATABASE_URL: `file:${join(this.dir, "t.db")}`,
      MODELS_DIR: this.modelsDir,
      TRAIN_PYTHON: PYTHON,
      ...extra,
    };
  }

  /** Writes a file (executable) and returns its path. */
  async write(name: string, text: string): Promise<string> {
    const path = join(this.dir, name);
    await Deno.writeTextFile(path, text, { mode: 0o755 });
    return path;
  }

  /** Writes a MODEL_REGISTRY file and returns the env entry that names it. */
  async registry(types: Record<string, string[]>): Promise<{ MODEL_REGISTRY: string }> {
    const entries = Object.fromEntries(
      Object.entries(types).map(([name, command]) => [name, { command }]),
    );
    return { MODEL_REGISTRY: await this.write("registry.json", JSON.stringify(entries)) };
  }

  /** Writes the fake trainer (driven by its hyperparameters) and returns its command. */
  async fakeTrainer(): Promise<string[]> {
    return [PYTHON, await this.write("fake_trainer.py", FAKE_TRAINER)];
  }

  /** Kills every process still working for this workspace's jobs, then removes the dir. */
  async dispose(): Promise<void> {
    for (const pid of processesWithEnv("TRAIN_OUTPUT_DIR", this.modelsDir)) {
      signal(pid, "SIGKILL");
    }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** One real server process; `base` is its URL once it listens. */
export class Server {
  base = "";
  #output = "";
  #reading: Promise<unknown> = Promise.resolve();

  private constructor(readonly child: Deno.ChildProcess) {}

  get pid(): number {
    return this.child.pid;
  }

  /** Everything the server printed so far. */
  get output(): string {
    return this.#output;
  }

  /** Starts `deno run main.ts` with `env`; resolves once it prints its listen line. */
  static async start(env: Record<string, string>, opts: SpawnOptions = {}): Promise<Server> {
    const server = new Server(spawnServer(env, opts));
    let found!: (url: string) => void;
    const url = new Promise<string>((r) => found = r);
    const { stdout, stderr, status } = server.child;
    server.#reading = Promise.all([server.#pump(stdout, found), server.#pump(stderr, found)]);
    const failed = status.then((s) => {
      throw new Error(`server exited (code ${s.code}) before listening:\n${server.output}`);
    });
    failed.catch(() => {});
    try {
      server.base = await within(START_MS, Promise.race([url, failed]), "listen");
      return server;
    } catch (e) {
      await server.kill("SIGKILL");
      throw new Error(`${(e as Error).message}\n${server.output}`);
    }
  }

  async #pump(stream: ReadableStream<Uint8Array>, found: (url: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      this.#output += decoder.decode(chunk, { stream: true });
      const m = /listening on (http:\/\/\S+)/.exec(this.#output);
      if (m) found(m[1]);
    }
  }

  /** Sends `sig` (if it still runs) and waits for the process to end. */
  async kill(sig: Deno.Signal = "SIGKILL"): Promise<Deno.CommandStatus> {
    signal(this.pid, sig);
    return await this.exited(START_MS);
  }

  /** Waits for the process to exit, at most `ms`. */
  async exited(ms: number): Promise<Deno.CommandStatus> {
    const status = await within(ms, this.child.status, `server ${this.pid} to exit`);
    await this.#reading;
    return status;
  }
}

export interface SpawnOptions {
  /** `deno run` permission flags instead of --allow-all (as `deno task serve:hosted` runs). */
  permissions?: string[];
}

function spawnServer(env: Record<string, string>, opts: SpawnOptions = {}): Deno.ChildProcess {
  const inherited = Deno.env.toObject();
  for (const name of SERVER_VARS) delete inherited[name];
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...opts.permissions ?? ["--allow-all"], "--frozen", "main.ts"],
    cwd: ROOT,
    env: { ...inherited, NO_COLOR: "1", ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Runs the server expecting it to refuse to start; returns its exit code and output. */
export async function runServerToExit(env: Record<string, string>, opts: SpawnOptions = {}) {
  const child = spawnServer(env, opts);
  try {
    const out = await within(START_MS, child.output(), "the server to refuse to start");
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return { code: out.code, output: text };
  } catch (e) {
    signal(child.pid, "SIGKILL");
    await child.status;
    throw e;
  }
}

/** Runs `code` with the training Python; returns stdout, throws with stderr on failure. */
export async function python(code: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(PYTHON, { args: ["-c", code, ...args], stdin: "null" })
    .output();
  const text = new TextDecoder();
  if (!out.success) throw new Error(`${PYTHON} failed:\n${text.decode(out.stderr)}`);
  return text.decode(out.stdout);
}

/** Fails (never skips) when the training packages are missing: CI must install them. */
export async function requireTrainingPython(): Promise<void> {
  await python("import sklearn, xgboost, joblib").catch((e) => {
    throw new Error(
      `${PYTHON} cannot import sklearn, xgboost and joblib; install them with ` +
        `'apt-get install -y --no-install-recommends python3-sklearn python3-xgboost ` +
        `python3-joblib' (.ci/run does this). ${e.message}`,
    );
  });
}

/** One HTTP request; the body is parsed as JSON when it is JSON. */
export async function http(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["content-type"] = "application/json";
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON; keep the text
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/** `promise`, or a rejection naming `what` after `ms`. */
export async function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let id: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    id = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(id);
  }
}

/** Calls `fn` until it returns something other than undefined/null/false, at most `ms`. */
export async function pollUntil<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  ms = 20_000,
  every = 50,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value !== undefined && value !== null && value !== false) return value as T;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Polls a job's status until `done(data)` holds; returns the status data. */
export async function waitJob(base: string, id: string, done: (d: Json) => boolean, ms = 60_000) {
  let last: Json = null;
  try {
    return await pollUntil(`job ${id}`, async () => {
      const r = await http(base, "GET", `/train/status/${id}`);
      last = r.body?.data;
      return r.status === 200 && done(last) ? last : null;
    }, ms);
  } catch (e) {
    throw new Error(
      `${(e as Error).message}; last status: ${JSON.stringify(last)?.slice(0, 2000)}`,
    );
  }
}

/** Waits until a job reaches a terminal status. */
export function waitTerminal(base: string, jobId: string, ms = 60_000) {
  return waitJob(base, jobId, (d) => ["completed", "failed", "cancelled"].includes(d.status), ms);
}

function signal(pid: number, sig: Deno.Signal): void {
  try {
    Deno.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Live (not zombie) processes: pid -> {pgid, ppid}. */
export function liveProcesses(): Map<number, { pgid: number; ppid: number }> {
  const found = new Map<number, { pgid: number; ppid: number }>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const [state, ppid, pgid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (state !== "Z" && state !== "X") {
        found.set(Number(entry.name), { pgid: Number(pgid), ppid: Number(ppid) });
      }
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/** Live members of a process group. */
export function groupMembers(pgid: number): number[] {
  return [...liveProcesses()].filter(([, p]) => p.pgid === pgid).map(([pid]) => pid);
}

export function groupAlive(pgid: number): boolean {
  return groupMembers(pgid).length > 0;
}

/** Processes whose environment holds `name=value`. */
export function processesWithEnv(name: string, value: string): number[] {
  const needle = `${name}=${value}\0`;
  const pids: number[] = [];
  for (const pid of liveProcesses().keys()) {
    try {
      if (`\0${Deno.readTextFileSync(`/proc/${pid}/environ`)}`.includes(`\0${needle}`)) {
        pids.push(pid);
      }
    } catch {
      // exited or not readable
    }
  }
  return pids;
}

/**
 * A training script for tests. Hyperparameters: progress (steps), lines (numbered stdout
 * lines), stderr_every, malformed, sleep (s), stderr (lines), metrics, write (artifact),
 * exit (code), grandchild (spawns `sleep 1000` in its group), ignore_term.
 */
const FAKE_TRAINER = `import json, os, signal, subprocess, sys, time
hp = json.loads(os.environ.get("TRAIN_HYPERPARAMETERS") or "{}")
def say(event, **fields):
    print("@@trainer " + json.dumps({"event": event, **fields}), flush=True)
if hp.get("ignore_term"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if hp.get("grandchild"):
    subprocess.Popen(["sleep", "1000"])
print("fake trainer starting", flush=True)
every = hp.get("stderr_every", 0)
for i in range(1, hp.get("lines", 0) + 1):
    sys.stdout.write(f"{i}\\n")
    if every and i % every == 0:
        sys.stderr.write(f"err {i}\\n")
total = hp.get("progress", 3)
for i in range(1, total + 1):
    say("progress", step=i, total=total, metrics={"loss": 1 / i}, message=f"step {i}")
if hp.get("malformed"):
    print("@@trainer {not json", flush=True)
time.sleep(hp.get("sleep", 0))
for line in hp.get("stderr", []):
    print(line, file=sys.stderr, flush=True)
say("metrics", metrics=hp.get("metrics", {"accuracy": 0.97}))
if hp.get("write", True):
    with open(os.environ["TRAIN_ARTIFACT_PATH"], "w") as f:
        f.write("model")
    say("artifact", path=os.environ["TRAIN_ARTIFACT_PATH"])
sys.exit(hp.get("exit", 0))
`;
