/**
 * Issue 7, defect 9 with real processes: `deno task rebuild` against a live server, a client
 * that dribbles its request body over a raw TCP connection, and a registry's bare `python3`.
 */
import assert from "node:assert/strict";
import { checkRuntimes } from "../models/runtime.ts";
import { loadRegistry, PYTHON as PYTHON_PLACEHOLDER } from "../models/registry.ts";
import { PYTHON, ROOT, Server, Workspace } from "./helpers/server.ts";

async function rebuild(env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--frozen", "db/rebuild_cli.ts"],
    cwd: ROOT,
    env,
    stdin: "null",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, output: text.decode(out.stdout) + text.decode(out.stderr) };
}

Deno.test("deno task rebuild refuses while a server holds the database", async () => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const env = ws.env();
    server = await Server.start(env);
    const refused = await rebuild({ DATABASE_URL: env.DATABASE_URL });
    assert.notEqual(refused.code, 0, refused.output);
    assert.match(refused.output, /refusing to rebuild .*a server is using it \(pid \d+\)/);
    assert.match(refused.output, /stop the server first/);
    await server.kill("SIGTERM");
    server = null;
    const done = await rebuild({ DATABASE_URL: env.DATABASE_URL });
    assert.equal(done.code, 0, done.output);
    assert.match(done.output, /rebuilt 0 jobs/);
  } finally {
    await server?.kill("SIGKILL");
    await ws.dispose();
  }
});

/** Sends headers and the start of a body, then one more byte every 200 ms, until answered. */
async function dribble(base: string, framing: "length" | "chunked") {
  const url = new URL(base);
  const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  const encoder = new TextEncoder();
  const chunk = (text: string) => framing === "chunked" ? `${text.length}\r\n${text}\r\n` : text;
  let sending = true;
  try {
    const started = performance.now();
    await conn.write(encoder.encode(
      `POST /train/xgboost HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\n` +
        (framing === "chunked" ? "Transfer-Encoding: chunked" : "Content-Length: 200") +
        `\r\n\r\n${chunk('{"retrain":')}`,
    ));
    // With Content-Length: 200 the body would take 38 s; a chunked one never ends.
    const sender = (async () => {
      while (sending) {
        await new Promise((r) => setTimeout(r, 200));
        if (sending) await conn.write(encoder.encode(chunk(" "))).catch(() => sending = false);
      }
    })();
    // A server without the deadline would wait for the rest forever: give up after 20 s.
    const giveUp = setTimeout(() => conn.close(), 20_000);
    const buffer = new Uint8Array(4096);
    let reply = "";
    while (!reply.includes("}")) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) break;
      reply += new TextDecoder().decode(buffer.subarray(0, n));
    }
    clearTimeout(giveUp);
    const elapsed = performance.now() - started;
    sending = false;
    await sender;
    return { reply, elapsed };
  } finally {
    sending = false;
    try {
      conn.close();
    } catch {
      // already closed by the give-up timer
    }
  }
}

Deno.test("a client that dribbles its body gets 408 at the deadline", async (t) => {
  const ws = await Workspace.create();
  const server = await Server.start(ws.env({ BODY_TIMEOUT_SECONDS: "1" }));
  try {
    for (const framing of ["length", "chunked"] as const) {
      await t.step(framing === "length" ? "with Content-Length" : "chunked", async () => {
        const { reply, elapsed } = await dribble(server.base, framing);
        assert.match(reply, /^HTTP\/1\.1 408 /, reply);
        assert.match(reply, /connection: close/i);
        assert.match(reply, /did not arrive within 1 s/);
        assert.ok(
          elapsed < 10_000,
          `answered after ${Math.round(elapsed)} ms, not at the deadline`,
        );
      });
    }
    await t.step("a body sent at once is not affected", async () => {
      const res = await fetch(`${server.base}/train/nope`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: '{"retrain": true}',
      });
      assert.equal(res.status, 404, await res.text());
    });
  } finally {
    await server.kill("SIGTERM");
    await ws.dispose();
  }
});

Deno.test("a bare python3 in MODEL_REGISTRY runs the interpreter the check reports", async () => {
  const ws = await Workspace.create();
  try {
    const { MODEL_REGISTRY } = await ws.registry({ mine: ["python3", "./train_mine.py"] });
    const registry = await loadRegistry(MODEL_REGISTRY);
    const mine = registry.get("mine")!;
    assert.equal(mine.command[0], PYTHON_PLACEHOLDER, "the supervisor substitutes the program");
    const runtime = (await checkRuntimes(registry, PYTHON)).get("mine")!;
    assert.equal(runtime.program, PYTHON);
  } finally {
    await ws.dispose();
  }
});
