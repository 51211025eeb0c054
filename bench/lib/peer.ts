/**
 * The peer the performance targets are ratios against: the seed's FastAPI design
 * (shared/peers/fastapi_seed), run with Debian's python3-fastapi and python3-uvicorn.
 */
import { existsSync } from "node:fs";
import { REPO, waitFor } from "./server.ts";

const PYTHON = "/usr/bin/python3";

/** The peer's folder: PEER_DIR, or shared/peers/fastapi_seed next to the checkout. */
export function peerDir(): string {
  const candidates = [
    Deno.env.get("PEER_DIR"),
    `${REPO}../shared/peers/fastapi_seed`,
    `${REPO}../../shared/peers/fastapi_seed`,
  ].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(`${p}/app.py`));
  if (!found) {
    throw new Error(
      `the peer's app.py is in none of ${candidates.join(", ")}; set PEER_DIR to its folder`,
    );
  }
  return found;
}

async function canImport(): Promise<boolean> {
  const out = await new Deno.Command(PYTHON, {
    args: ["-c", "import fastapi, uvicorn"],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => null);
  return !!out?.success;
}

/** Installs python3-fastapi and python3-uvicorn with apt-get when Python cannot import them. */
export async function ensurePeerPackages(log: (m: string) => void): Promise<void> {
  if (await canImport()) return;
  log("installing the peer's packages: apt-get install python3-fastapi python3-uvicorn");
  const out = await new Deno.Command("apt-get", {
    args: ["install", "-y", "--no-install-recommends", "python3-fastapi", "python3-uvicorn"],
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success || !await canImport()) {
    throw new Error(
      `could not install the peer's packages (run apt-get install python3-fastapi ` +
        `python3-uvicorn as root): ${new TextDecoder().decode(out.stderr).slice(-500)}`,
    );
  }
}

export interface Peer {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts the peer on a free loopback port with every model type running `command`. */
export async function startPeer(dir: string, command: string[]): Promise<Peer> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const scripts = JSON.stringify(
    Object.fromEntries(["xgboost", "neural-net", "random-forest"].map((t) => [t, command])),
  );
  const child = new Deno.Command(PYTHON, {
    args: ["-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", String(port)]
      .concat(["--log-level", "warning"]),
    cwd: peerDir(),
    env: { PEER_MODELS_DIR: `${dir}/peer-models`, PEER_SCRIPTS: scripts },
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    "the peer to listen",
    async () => {
      const res = await fetch(`${url}/train/jobs?limit=1`).catch(() => null);
      await res?.body?.cancel();
      return res?.ok ? true : undefined;
    },
    30_000,
    100,
  );
  return {
    url,
    pid: child.pid,
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
    },
  };
}
