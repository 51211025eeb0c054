/**
 * Hosted-mode helpers: real `WORKERS=remote` servers and real `worker/main.ts` processes on
 * one workspace, and checks of the shared database from outside.
 */
import { PYTHON, ROOT, Server, START_MS, within, type Workspace } from "./server.ts";

// One copy of each, in bench/ (which must not import tests/): the drills check the same.
export { logProblems } from "../../bench/drills/invariants.ts";
export { childrenOf } from "../../bench/lib/procfs.ts";

export const WORKER_TOKEN = "test-worker-token-0123456789abcdef";

/** A port free right now, so that a restarted server can listen where its workers expect. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Starts a remote-mode server on the workspace's database. */
export function startHostedServer(
  ws: Workspace,
  extra: Record<string, string> = {},
): Promise<Server> {
  return Server.start(ws.env({
    WORKERS: "remote",
    WORKER_TOKEN,
    LEASE_SECONDS: "3",
    ...extra,
  }));
}

/** One real worker process (`deno run worker/main.ts`). */
export class WorkerProcess {
  #output = "";
  #reading: Promise<unknown>;

  private constructor(readonly child: Deno.ChildProcess) {
    this.#reading = Promise.all([this.#pump(child.stdout), this.#pump(child.stderr)]);
  }

  get pid(): number {
    return this.child.pid;
  }

  get output(): string {
    return this.#output;
  }

  /** Starts a worker for `server` with the workspace's models dir; resolves once connected. */
  static async start(
    ws: Workspace,
    base: string,
    env: Record<string, string> = {},
  ): Promise<WorkerProcess> {
    const inherited = Deno.env.toObject();
    for (const name of WORKER_VARS) delete inherited[name];
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--frozen", "worker/main.ts"],
      cwd: ROOT,
      env: {
        ...inherited,
        NO_COLOR: "1",
        TRAINER_URL: base,
        WORKER_TOKEN,
        MODELS_DIR: ws.modelsDir,
        TRAIN_PYTHON: PYTHON,
        ...env,
      },
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const worker = new WorkerProcess(child);
    try {
      await within(START_MS, worker.waitFor(/connected to/), "the worker to connect");
    } catch (e) {
      await worker.kill("SIGKILL");
      throw new Error(`${(e as Error).message}\n${worker.output}`);
    }
    return worker;
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) this.#output += decoder.decode(chunk, { stream: true });
  }

  /** Resolves once the worker has printed a line matching `pattern`. */
  async waitFor(pattern: RegExp): Promise<void> {
    while (!pattern.test(this.#output)) {
      const exited = await Promise.race([
        this.child.status.then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 50)),
      ]);
      if (exited && !pattern.test(this.#output)) {
        throw new Error(`worker exited before printing ${pattern}:\n${this.#output}`);
      }
    }
  }

  signal(sig: Deno.Signal): void {
    try {
      Deno.kill(this.pid, sig);
    } catch {
      // already gone
    }
  }

  /** Sends `sig` and waits for the process to end. */
  async kill(sig: Deno.Signal = "SIGKILL"): Promise<Deno.CommandStatus> {
    this.signal(sig);
    const status = await within(START_MS, this.child.status, `worker ${this.pid} to exit`);
    await this.#reading;
    return status;
  }
}

const WORKER_VARS = ("TRAINER_URL WORKER_TOKEN WORKER_NAME MODELS_DIR MODEL_REGISTRY " +
  "MAX_CONCURRENT_JOBS CANCEL_GRACE_SECONDS TRAIN_PYTHON DATASET_PATH DATASET_TARGET " +
  "DATASET_TASK API_TOKEN WORKERS LEASE_SECONDS").split(" ");
