/** E2E: the real `./trainer` client command against a real server training real models. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { stepText } from "../cli/format.ts";
import {
  http,
  type Json,
  pollUntil,
  requireTrainingPython,
  ROOT,
  Server,
  within,
  Workspace,
} from "./helpers/server.ts";

const TOKEN = "cli-test-token";
const ESC = "\x1b";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `./trainer ...args` with stdout piped (not a terminal). */
function trainer(base: string, args: string[], env: Record<string, string> = {}) {
  return new Deno.Command(join(ROOT, "trainer"), {
    args,
    env: { TRAINER_URL: base, TRAINER_TOKEN: TOKEN, NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function run(base: string, args: string[], env: Record<string, string> = {}) {
  const out = await trainer(base, args, env).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/** Runs `./trainer ...args` inside a pseudo-terminal (script -q), 120 columns wide. */
async function runInTerminal(base: string, args: string[]): Promise<Run> {
  const command = `stty cols 120; exec ./trainer ${args.join(" ")}`;
  const out = await new Deno.Command("script", {
    args: ["-q", "-e", "-c", command, "/dev/null"],
    cwd: ROOT,
    env: { TRAINER_URL: base, TRAINER_TOKEN: TOKEN, TERM: "xterm" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

const show = (r: Run) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
const lastLine = (text: string) => text.trimEnd().split("\n").at(-1)!;

Deno.test("e2e: the trainer command-line client", async (t) => {
  await requireTrainingPython();
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const env = ws.env({
      ...await ws.registry({ fake: await ws.fakeTrainer() }),
      API_TOKEN: TOKEN,
    });
    server = await Server.start(env);
    const base = server.base;
    let xgb = "";

    await t.step("train xgboost --watch, not on a terminal: plain lines, exit 0", async () => {
      const r = await run(base, ["train", "xgboost", "--retrain", "--no-cv", "--watch"]);
      assert.equal(r.code, 0, show(r));
      xgb = /^job (\S+) started/.exec(r.stdout)?.[1] ?? "";
      assert.ok(xgb, show(r));
      assert.ok(!r.stdout.includes(ESC), "no terminal control sequences");
      assert.match(r.stdout, /^\d\d:\d\d:\d\d {2}xgboost +started \(pid \d+\)$/m);
      assert.match(r.stdout, /^\d\d:\d\d:\d\d {2}xgboost +progress \d+\/\d+/m);
      assert.match(r.stdout, /^\d\d:\d\d:\d\d {2}xgboost +metrics .*accuracy=/m);
      assert.match(lastLine(r.stdout), new RegExp(`^job ${xgb} completed: model .+\\.joblib$`));
    });

    await t.step("train xgboost --watch --json: one JSON object per line, end last", async () => {
      const r = await run(base, ["train", "xgboost", "--retrain", "--no-cv", "--watch", "--json"]);
      assert.equal(r.code, 0, show(r));
      const lines = r.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
      const [submitted, ...events] = lines;
      assert.equal(submitted.model_type, "xgboost");
      const end = events.at(-1);
      assert.equal(end.event, "end");
      assert.equal(end.data.job_id, submitted.job_id);
      assert.equal(end.data.status, "completed");
      const kinds = events.slice(0, -1).map((e: Json) => e.event);
      assert.ok(kinds.includes("progress") && kinds.includes("completed"), kinds.join());
      for (const e of events.slice(0, -1)) assert.equal(e.job_id, submitted.job_id);
    });

    await t.step("watch on a terminal draws a progress bar", async () => {
      const r = await runInTerminal(base, ["watch", xgb]);
      assert.equal(r.code, 0, show(r));
      assert.ok(r.stdout.includes(`${ESC}[?25l`), "hides the cursor while drawing");
      assert.match(r.stdout, /xgboost +completed +█+ 100% (\d+)\/\1 ETA/);
      assert.match(r.stdout, new RegExp(`job ${xgb} completed: model`));
    });

    await t.step("a failed job exits 1, a cancelled one 2", async () => {
      const failed = await run(base, [
        "train",
        "fake",
        "--set",
        "exit=3",
        "--set",
        "write=false",
        "--watch",
      ]);
      assert.equal(failed.code, 1, show(failed));
      assert.match(lastLine(failed.stdout), /failed: exit_nonzero/);

      const watching = trainer(base, [
        "train",
        "fake",
        "--retrain",
        "--set",
        "sleep=1000",
        "--watch",
      ]);
      const output = watching.output();
      const running = await pollRunningFake(base);
      const cancel = await run(base, ["cancel", running]);
      assert.equal(cancel.code, 0, show(cancel));
      assert.equal(cancel.stdout.trim(), `job ${running} cancelled`);
      const out = await output;
      assert.equal(out.code, 2, new TextDecoder().decode(out.stdout));
    });

    await t.step("status, jobs, models, logs: text and --json", async () => {
      const status = await run(base, ["status", xgb]);
      assert.equal(status.code, 0, show(status));
      assert.match(status.stdout, /^status +completed$/m);
      const statusJson = JSON.parse((await run(base, ["status", xgb, "--json"])).stdout);
      assert.equal(statusJson.job_id, xgb);

      const jobs = await run(base, ["jobs", "--type", "xgboost", "--limit", "5"]);
      assert.equal(jobs.code, 0, show(jobs));
      assert.match(jobs.stdout, /^JOB +TYPE +STATUS +CREATED +ENDED +PROGRESS$/m);
      assert.match(jobs.stdout, new RegExp(`^${xgb} +xgboost +completed`, "m"));
      assert.match(lastLine(jobs.stdout), /^2 shown, 2 matching, \d+ in all$/);

      const models = await run(base, ["models", "--json"]);
      const names = Object.keys(JSON.parse(models.stdout).available_models);
      assert.ok(names.some((n) => n.startsWith("xgboost_model_")), names.join());
      const listed = await run(base, ["models"]);
      assert.equal(listed.code, 0, show(listed));
      assert.match(listed.stdout, /^FILE +TYPE +STATUS +SIZE +MODIFIED +JOB$/m);
      assert.match(listed.stdout, /^xgboost_model_\S+ +xgboost +ok /m);
      const n = names.length;
      assert.match(
        lastLine(listed.stdout),
        new RegExp(`^${n} model\\(s\\) listed from folder .* \\(${n} ok\\)$`),
      );
      // A recorded model whose file went away says so, with the API's words.
      const gone = names.find((name) => name.startsWith("xgboost_model_"))!;
      await Deno.rename(join(ws.modelsDir, gone), join(ws.dir, gone));
      const after = await run(base, ["models"]);
      assert.match(after.stdout, new RegExp(`^${gone} +xgboost +missing `, "m"));
      assert.match(after.stdout, new RegExp(`^missing ${gone}: the file is not in folder `, "m"));
      assert.match(lastLine(after.stdout), /\(\d+ ok, 1 missing\)$/);
      await Deno.rename(join(ws.dir, gone), join(ws.modelsDir, gone));

      const logs = await run(base, ["logs", xgb]);
      assert.equal(logs.code, 0, show(logs));
      const http200 = await http(base, "GET", `/train/status/${xgb}`, undefined, {
        authorization: `Bearer ${TOKEN}`,
      });
      assert.equal(logs.stdout.split("\n").length - 1, http200.body.data.log_lines);
      const followed = await run(base, ["logs", xgb, "--follow"]);
      assert.equal(followed.stdout, logs.stdout);
    });

    await t.step("errors: exit 3 with a message a person can act on", async () => {
      const missing = await run(base, ["status", "00000000-0000-4000-8000-000000000000"]);
      assert.equal(missing.code, 3, show(missing));
      assert.match(missing.stderr, /404: no job with id/);
      const noToken = await run(base, ["jobs"], { TRAINER_TOKEN: "" });
      assert.equal(noToken.code, 3);
      assert.match(noToken.stderr, /401.*TRAINER_TOKEN/);
      const badUrl = await run(base, ["jobs"], { TRAINER_URL: "ftp://x" });
      assert.match(badUrl.stderr, /TRAINER_URL=ftp:\/\/x must start with http/);
      const badSet = await run(base, ["train", "fake", "--set", "oops"]);
      assert.equal(badSet.code, 3);
      assert.match(badSet.stderr, /--set oops: use key=value/);
      const unknown = await run(base, ["frobnicate"]);
      assert.equal(unknown.code, 3);
      assert.match(unknown.stderr, /unknown command 'frobnicate'/);
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});

/** The id of the running `fake` job (the one with a long sleep). */
async function pollRunningFake(base: string): Promise<string> {
  const headers = { authorization: `Bearer ${TOKEN}` };
  return await pollUntil("a running fake job", async () => {
    const r = await http(
      base,
      "GET",
      "/train/jobs?status=running&model_type=fake",
      undefined,
      headers,
    );
    return r.body.jobs?.[0]?.job_id as string | undefined;
  });
}

Deno.test("e2e: watch reconnects on its own across a server restart", async () => {
  const ws = await Workspace.create();
  const servers: Server[] = [];
  try {
    const registry = await ws.registry({ fake: await ws.fakeTrainer() });
    const first = await Server.start(ws.env({ ...registry, API_TOKEN: TOKEN }));
    servers.push(first);
    // The same port after the restart, as a client configured with one TRAINER_URL expects.
    const port = new URL(first.base).port;
    const env = ws.env({ ...registry, API_TOKEN: TOKEN, PORT: port });
    const watching = trainer(first.base, ["train", "fake", "--set", "sleep=1000", "--watch"]);
    const output = watching.output();
    const id = await pollRunningFake(first.base);
    await first.kill("SIGKILL");
    servers.push(await Server.start(env));
    const out = await output;
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1, `${stdout}\n${stderr}`);
    assert.match(stderr, /stream dropped .*; reconnecting/);
    assert.match(lastLine(stdout), new RegExp(`^job ${id} failed: interrupted`));
    const started = stdout.split("\n").filter((l) => / started \(pid/.test(l));
    assert.equal(started.length, 1, "no event is shown twice after reconnecting");
  } finally {
    for (const s of servers) await s.kill();
    await ws.dispose();
  }
});

Deno.test("help: the server commands say what they do instead of starting", async () => {
  for (const command of ["serve", "worker"]) {
    const r = await within(20_000, run("http://127.0.0.1:9", [command, "--help"]), command);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`^usage: \\./trainer ${command}\\n`));
    assert.doesNotMatch(r.stdout + r.stderr, /listening on|connected to/);
  }
  const client = await run("http://127.0.0.1:9", ["--help"]);
  assert.equal(client.code, 0, show(client));
  assert.match(client.stdout, /Not the client[^\n]*\n\s+serve\s+run the API server here/);
});

Deno.test("progress text: steps of a job, a percentage of an all parent", () => {
  assert.equal(stepText({ step: 3, total: 10 }, "xgboost"), "3/10");
  assert.equal(stepText({ step: 1999, total: 3000 }, "all"), "66%");
  assert.equal(stepText(null, "all"), "-");
});
