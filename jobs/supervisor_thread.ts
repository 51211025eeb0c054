/**
 * Entry point of the supervisor thread (a Worker started by main.ts). It waits for its
 * options, runs the Supervisor over a ThreadPort, and stops it on request.
 */
/// <reference lib="deno.worker" />
import { loadRegistry } from "../models/registry.ts";
import { parseArtifactStore } from "../artifacts/config.ts";
import { Supervisor } from "./supervisor.ts";
import { type Channel, ThreadPort } from "./thread_port.ts";

export interface SupervisorThreadOptions {
  registryPath?: string;
  modelsDir: string;
  maxConcurrent: number;
  graceSeconds: number;
  workerId: string;
}

type Control = { init: SupervisorThreadOptions } | { control: "shutdown" };

const channel = self as unknown as Channel;
const port = new ThreadPort(channel);
let supervisor: Supervisor | null = null;

channel.addEventListener("message", async (event) => {
  const message = event.data as Partial<Control>;
  if ("init" in message && message.init) {
    const o = message.init;
    supervisor = new Supervisor(port, {
      registry: await loadRegistry(o.registryPath),
      runtime: (type) => port.runtime(type),
      modelsDir: o.modelsDir,
      maxConcurrent: o.maxConcurrent,
      graceSeconds: o.graceSeconds,
      workerId: o.workerId,
      // Checked by main.ts at start; the same environment is this thread's.
      artifacts: parseArtifactStore(
        Deno.env.get("ARTIFACT_STORE"),
        o.modelsDir,
        Deno.env.toObject(),
      ),
      log: (m) => console.log(`[trainer] ${m}`),
    });
    supervisor.start();
  }
  if ("control" in message && message.control === "shutdown") {
    await supervisor?.shutdown();
    channel.postMessage({ control: "stopped" });
  }
});
