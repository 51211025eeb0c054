/**
 * The remote worker's start-up, before the hosted API exists: a real `deno run worker/main.ts`
 * child each time. Missing settings and a refused token stop it with exit code 2 and a message
 * naming what to set; an unreachable API is retried with growing delays; processes left by an
 * earlier run of a worker of the same name are killed before it registers.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { pollUntil, PYTHON, ROOT, within, Workspace } from "./helpers/server.ts";

/** Variables the worker reads; cleared from the inherited environment to stay hermetic. */
const WORKER_VARS = ("TRAINER_URL WORKER_TOKEN WORKER_NAME MODELS_DIR MODEL_REGISTRY " +
  "MAX_CONCURRENT_JOBS CANCEL_GRACE_SECONDS JOB_NICE TRAIN_PYTHON DATASET_PATH DATASET_TARGET " +
  "DATASET_TASK").split(" ");

/** A worker child with output piped; the caller reads or kills it. */
function spawnWorker(env: Record<string, string>): Deno.ChildProcess {
  const inherited = Deno.env.toObject();
  for (const name of WORKER_VARS) delete inherited[name];
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--frozen", "worker/main.ts"],
    cwd: ROOT,
    env: { ...inherited, NO_COLOR: "1", ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Runs a worker that should stop by itself; its exit code and stderr. */
async function runToExit(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const child = spawnWorker(env);
  try {
    const out = await within(30_000, child.output(), "the worker to exit");
    return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
  } catch (e) {
    child.kill("SIGKILL");
    await child.status;
    throw e;
  }
}

/**
 * Runs a worker until its stderr matches `enough` (or `ms` pass), then kills it; everything it
 * wrote to stderr. The deadline is generous: a loaded machine takes seconds to start Deno.
 */
async function runUntil(
  env: Record<string, string>,
  enough: (stderr: string) => boolean,
  ms: number,
): Promise<string> {
  const child = spawnWorker(env);
  let text = "";
  const decoder = new TextDecoder();
  const stdout = new Response(child.stdout).text();
  const reading = (async () => {
    for await (const chunk of child.stderr) {
      text += decoder.decode(chunk, { stream: true });
      if (enough(text)) return;
    }
  })();
  await Promise.race([reading, new Promise((r) => setTimeout(r, ms))]);
  child.kill("SIGKILL");
  await child.status;
  await stdout;
  await reading.catch(() => {});
  return text;
}

/** A port nothing listens on: bound, then closed. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function withWorkspace(fn: (ws: Workspace) => Promise<void>): Promise<void> {
  const ws = await Workspace.create();
  try {
    await fn(ws);
  } finally {
    await ws.dispose();
  }
}

/** The settings every worker here needs but the one under test; the API at `url`. */
function baseEnv(ws: Workspace, url: string): Record<string, string> {
  return {
    TRAINER_URL: url,
    WORKER_TOKEN: "secret",
    MODELS_DIR: ws.modelsDir,
    TRAIN_PYTHON: PYTHON,
  };
}

Deno.test("worker: no TRAINER_URL exits 2 naming it and what to set", async () => {
  await withWorkspace(async (ws) => {
    const { TRAINER_URL: _, ...env } = baseEnv(ws, "");
    const { code, stderr } = await runToExit(env);
    assert.equal(code, 2, stderr);
    assert.match(stderr, /TRAINER_URL is not set: set it to the trainer API's URL/);
    assert.doesNotMatch(stderr, /WORKER_TOKEN/, "only what is missing is named");
  });
});

Deno.test("worker: no WORKER_TOKEN, or a bad URL, exits 2 naming the variable", async () => {
  await withWorkspace(async (ws) => {
    const { WORKER_TOKEN: _, ...env } = baseEnv(ws, "ftp://example.com");
    const { code, stderr } = await runToExit(env);
    assert.equal(code, 2, stderr);
    assert.match(stderr, /WORKER_TOKEN is not set/);
    assert.match(stderr, /TRAINER_URL="ftp:\/\/example.com": must be .*http/);
  });
});

Deno.test("worker: a shared setting is checked with the server's rules", async () => {
  await withWorkspace(async (ws) => {
    const env = { ...baseEnv(ws, "http://127.0.0.1:1"), MAX_CONCURRENT_JOBS: "0" };
    const { code, stderr } = await runToExit(env);
    assert.equal(code, 2, stderr);
    assert.match(stderr, /MAX_CONCURRENT_JOBS="0"/);
  });
});

Deno.test("worker: an unreachable API is retried with growing delays", async () => {
  await withWorkspace(async (ws) => {
    const url = `http://127.0.0.1:${closedPort()}`;
    const retry = /cannot reach TRAINER_URL=(\S+): .*; retrying in ([\d.]+) s/g;
    const stderr = await runUntil(
      baseEnv(ws, url),
      (text) => [...text.matchAll(retry)].length >= 3,
      30_000,
    );
    const delays = [...stderr.matchAll(retry)];
    assert.ok(delays.length >= 2, `at least two retries:\n${stderr}`);
    assert.equal(delays[0][1], url);
    assert.deepEqual(
      delays.slice(0, 3).map((m) => Number(m[2])),
      [0.5, 1, 2].slice(0, delays.length),
    );
  });
});

Deno.test("worker: a refused WORKER_TOKEN exits 2 saying it must equal the server's", async () => {
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    seen.push(`${req.method} ${new URL(req.url).pathname} ${req.headers.get("authorization")}`);
    return Response.json({ status: "error", message: "invalid worker token", details: [] }, {
      status: 401,
    });
  });
  try {
    await withWorkspace(async (ws) => {
      const url = `http://127.0.0.1:${server.addr.port}`;
      const { code, stderr } = await runToExit(baseEnv(ws, url));
      assert.equal(code, 2, stderr);
      assert.match(
        stderr,
        new RegExp(`WORKER_TOKEN was refused by ${url}: it must equal the server's WORKER_TOKEN`),
      );
      assert.deepEqual(seen, ["POST /worker/register Bearer secret"], "one try: no retry helps");
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("worker: processes left by an earlier run of the same name are killed at start", async () => {
  await withWorkspace(async (ws) => {
    const name = `leftover-test-${crypto.randomUUID()}`;
    // Like a job of a worker that died: its own process group, our name in its environment.
    const leftover = new Deno.Command("sleep", {
      args: ["300"],
      env: { TRAINER_WORKER_NAME: name },
      detached: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    // Another worker's job must live on.
    const bystander = new Deno.Command("sleep", {
      args: ["300"],
      env: { TRAINER_WORKER_NAME: `${name}-other` },
      detached: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const env = { ...baseEnv(ws, `http://127.0.0.1:${closedPort()}`), WORKER_NAME: name };
      const worker = spawnWorker(env);
      let stdout = "";
      const reading = (async () => {
        for await (const chunk of worker.stdout.pipeThrough(new TextDecoderStream())) {
          stdout += chunk;
        }
      })();
      const stderr = new Response(worker.stderr).text();
      try {
        const status = await within(10_000, leftover.status, "the leftover process to die");
        assert.equal(status.signal, "SIGKILL");
        const said = new RegExp(
          `killed pid\\(s\\) ${leftover.pid} left by an earlier run of worker ${name}`,
        );
        await pollUntil("the worker to log the pids it killed", () => said.test(stdout), 10_000);
      } finally {
        worker.kill("SIGKILL");
        await worker.status;
        await reading;
        await stderr;
      }
      assert.ok(alive(bystander.pid), "another worker's process is left alone");
    } finally {
      for (const c of [leftover, bystander]) {
        try {
          c.kill("SIGKILL");
        } catch {
          // gone already
        }
        await c.status;
      }
    }
  });
});

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(join("/proc", String(pid), "stat"));
    return !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

Deno.test("worker: a SIGTERM during its start-up stops it cleanly", async () => {
  await withWorkspace(async (ws) => {
    // An interpreter whose probe takes long: the worker is still starting when the signal comes.
    const marker = join(ws.dir, "probe.pid");
    const slowPython = join(ws.dir, "slow-python");
    await Deno.writeTextFile(slowPython, `#!/bin/sh\necho $$ > "${marker}"\nexec sleep 30\n`);
    await Deno.chmod(slowPython, 0o755);
    const worker = spawnWorker({
      ...baseEnv(ws, `http://127.0.0.1:${closedPort()}`),
      TRAIN_PYTHON: slowPython,
    });
    const output = Promise.all([
      new Response(worker.stdout).text(),
      new Response(worker.stderr).text(),
    ]);
    let probe = 0;
    try {
      await pollUntil("the runtime probe to start", async () => {
        probe = Number(await Deno.readTextFile(marker).catch(() => "0"));
        return probe > 0;
      }, 20_000);
      worker.kill("SIGTERM");
      const status = await within(10_000, worker.status, "the worker to stop");
      const [stdout] = await output;
      assert.equal(status.signal, null, "not killed by the signal's default action");
      assert.equal(status.code, 0, stdout);
      assert.match(stdout, /SIGTERM: stopping/);
      assert.match(stdout, /\[worker\] stopped/);
    } finally {
      try {
        worker.kill("SIGKILL");
      } catch { /* it has exited */ }
      await worker.status;
      await output;
      if (probe > 0) {
        try {
          Deno.kill(probe, "SIGKILL");
        } catch { /* already gone */ }
      }
    }
  });
});
