/**
 * Entry point of the supervisor thread (a Worker started by main.ts). It waits for its
 * options, runs the Supervisor over a ThreadPort, and stops it on request.
 */
/// <reference lib="deno.worker" />
import { loadRegistry } from "../models/registry.ts";
import { FolderStore } from "../artifacts/folder_store.ts";
import type { ArtifactStore } from "../artifacts/store.ts";
import { niceThisThread } from "./process.ts";
import { Supervisor } from "./supervisor.ts";
import { type Channel, ThreadPort } from "./thread_port.ts";

export interface SupervisorThreadOptions {
  registryPath?: string;
  modelsDir: string;
  maxConcurrent: number;
  graceSeconds: number;
  nice: number;
  workerId: string;
  /** The local database's log folder when jobs' stdout goes to log files (LOG_FILES). */
  logDir?: string;
}

type Control = { init: SupervisorThreadOptions } | { control: "shutdown" };

const channel = self as unknown as Channel;
const port = new ThreadPort(channel);
let supervisor: Supervisor | null = null;

channel.addEventListener("message", async (event) => {
  const message = event.data as Partial<Control>;
  if ("init" in message && message.init) {
    const o = message.init;
    // Half-way between the API and the jobs (JOB_NICE): under a burst of launches the API
    // answers first (measured: accepts 15-25 % faster with 16 no-op jobs at a time on 2 cores),
    // and training still yields to this thread reading its output. (A job is spawned on the
    // runtime's shared thread pool, and starts at that thread's niceness, this one's or the
    // server's, for the moment before setNice lowers it.)
    niceThisThread(Math.floor(o.nice / 2), (m) => console.log(`[trainer] ${m}`));
    supervisor = new Supervisor(port, {
      registry: await loadRegistry(o.registryPath),
      runtime: (type) => port.runtime(type),
      modelsDir: o.modelsDir,
      maxConcurrent: o.maxConcurrent,
      // Measured: the claim's round trip to the main thread, which waits while it commits,
      // was 4-7 ms of each slot's turn (16 slots, no-op jobs).
      prefetch: o.maxConcurrent,
      graceSeconds: o.graceSeconds,
      nice: o.nice,
      workerId: o.workerId,
      logDir: o.logDir,
      artifacts: await artifactStore(o.modelsDir),
      log: (m) => console.log(`[trainer] ${m}`),
    });
    supervisor.start();
  }
  if ("control" in message && message.control === "shutdown") {
    await supervisor?.shutdown();
    channel.postMessage({ control: "stopped" });
  }
});

/**
 * The ARTIFACT_STORE (checked by main.ts at start; the same environment is this thread's).
 * The S3 client is loaded only for an S3 store: the AWS SDK adds some 30 MB to each isolate
 * that imports it, and every job's spawn forks this whole process, so its size is paid per
 * launch (copying page tables was a third of the CPU under the accept benchmark).
 */
async function artifactStore(modelsDir: string): Promise<ArtifactStore> {
  const value = Deno.env.get("ARTIFACT_STORE");
  if (value === undefined || value === "") return new FolderStore(modelsDir);
  const { parseArtifactStore } = await import("../artifacts/config.ts");
  return parseArtifactStore(value, modelsDir, Deno.env.toObject());
}
