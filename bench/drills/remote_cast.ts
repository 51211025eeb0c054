/**
 * The processes of the remote kill drill: `WORKERS=remote` servers on fixed ports sharing one
 * database file, and remote workers each pointed at one server. Any of them can be SIGKILLed
 * and started again where the others expect it (same port, same WORKER_NAME).
 */
import { childrenOf, jobProcesses, procStat } from "../lib/procfs.ts";
import { type Started, startProcess } from "../lib/server.ts";

export const WORKER_TOKEN = "drill-worker-token-0123456789abcdef";

/** A port free right now, so that a restarted server listens where its workers expect. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

export interface CastOptions {
  dir: string;
  dbPath: string;
  registry: string;
  servers: number;
  workers: number;
  leaseSeconds: number;
  maxConcurrent: number;
}

export interface Member {
  kind: "server" | "worker";
  /** `server-<i>` or the worker's WORKER_NAME. */
  name: string;
  url: string;
  env: Record<string, string>;
  proc: Started | null;
  /** The worker id its current run registered with (workers only). */
  workerId: string | null;
}

/** Variables of the server and worker that the drill sets itself, never inherits. */
const OWN_VARS = ("PORT HOST DATABASE_URL MODELS_DIR MODEL_REGISTRY MAX_CONCURRENT_JOBS " +
  "CANCEL_GRACE_SECONDS API_TOKEN WORKERS WORKER_TOKEN LEASE_SECONDS TRAINER_URL WORKER_NAME " +
  "TRAINER_WORKER_NAME").split(" ");

export class Cast {
  readonly servers: Member[] = [];
  readonly workers: Member[] = [];
  /** Problems seen by the sampler: a server with a child, a job run by two groups at once. */
  readonly serverChildren = new Set<string>();
  readonly overlaps = new Set<string>();
  /** Every run of every member, killed ones included, for their logs. */
  readonly runs: { name: string; proc: Started }[] = [];
  #sampler: ReturnType<typeof setInterval> | null = null;

  constructor(readonly opts: CastOptions) {
    const inherited = Deno.env.toObject();
    for (const name of OWN_VARS) delete inherited[name];
    const common = {
      ...inherited,
      NO_COLOR: "1",
      MODELS_DIR: `${opts.dir}/models`,
      MODEL_REGISTRY: opts.registry,
      WORKER_TOKEN,
    };
    for (let i = 0; i < opts.servers; i++) {
      const port = freePort();
      this.servers.push({
        kind: "server",
        name: `server-${i}`,
        url: `http://127.0.0.1:${port}`,
        env: {
          ...common,
          PORT: String(port),
          HOST: "127.0.0.1",
          API_TOKEN: "",
          DATABASE_URL: `file:${opts.dbPath}`,
          WORKERS: "remote",
          LEASE_SECONDS: String(opts.leaseSeconds),
        },
        proc: null,
        workerId: null,
      });
    }
    // A restarted worker kills every process of its name: a name of this run alone keeps it
    // off another drill's (or test's) jobs on the same machine.
    const tag = crypto.randomUUID().slice(0, 8);
    for (let i = 0; i < opts.workers; i++) {
      const server = this.servers[i % opts.servers];
      this.workers.push({
        kind: "worker",
        name: `drill-${tag}-box-${i}`,
        url: server.url,
        env: {
          ...common,
          TRAINER_URL: server.url,
          WORKER_NAME: `drill-${tag}-box-${i}`,
          MAX_CONCURRENT_JOBS: String(opts.maxConcurrent),
          CANCEL_GRACE_SECONDS: "1",
        },
        proc: null,
        workerId: null,
      });
    }
  }

  get members(): Member[] {
    return [...this.servers, ...this.workers];
  }

  /** Starts `m` (again) and waits until it listens, or has registered with its server. */
  async start(m: Member): Promise<void> {
    const proc = await startProcess(
      m.kind === "server"
        ? {
          script: "main.ts",
          env: m.env,
          clearEnv: true,
          ready: /listening on http/,
          what: m.name,
        }
        : {
          script: "worker/main.ts",
          env: m.env,
          clearEnv: true,
          ready: /\[worker\] \S+ \((\S+)\) connected to/,
          what: m.name,
        },
    );
    m.proc = proc;
    this.runs.push({ name: m.name, proc });
    m.workerId = m.kind === "worker" ? proc.ready[1] : null;
  }

  /** Lines of every run's output that match `pattern`, prefixed with the member's name. */
  grep(pattern: RegExp, limit = 20): string[] {
    const found: string[] = [];
    for (const r of this.runs) {
      for (const [i, line] of r.proc.output.entries()) {
        if (!pattern.test(line) || found.length >= limit) continue;
        // With the first lines of its stack.
        found.push(...r.proc.output.slice(i, i + 4).map((l) => `${r.name}: ${l}`));
      }
    }
    return found;
  }

  async kill(m: Member): Promise<void> {
    await m.proc?.kill();
    m.proc = null;
  }

  async stopAll(): Promise<void> {
    // Workers first: they stop their jobs and report them while their servers still listen.
    await Promise.all(this.workers.map((w) => w.proc?.stop(10_000)));
    await Promise.all(this.servers.map((s) => s.proc?.stop(10_000)));
    for (const m of this.members) m.proc = null;
  }

  /**
   * Every `everyMs`: no server has a child process (in hosted mode they never spawn), and no
   * job has processes in two process groups at once (two runs of it alive together).
   */
  startSampling(jobIds: () => ReadonlySet<string>, everyMs = 200): void {
    this.#sampler ??= setInterval(() => {
      for (const s of this.servers) {
        if (!s.proc) continue;
        for (const pid of childrenOf(s.proc.pid)) this.serverChildren.add(`${s.name}: pid ${pid}`);
      }
      const groups = new Map<string, Set<number>>();
      for (const [pid, id] of jobProcesses(jobIds())) {
        const st = procStat(pid);
        if (!st || st.state === "Z") continue;
        groups.set(id, (groups.get(id) ?? new Set()).add(st.pgid));
      }
      for (const [id, g] of groups) if (g.size > 1) this.overlaps.add(id);
    }, everyMs);
  }

  stopSampling(): void {
    if (this.#sampler) clearInterval(this.#sampler);
    this.#sampler = null;
  }
}
