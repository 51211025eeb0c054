/**
 * spawnLeader starts a job as the leader of its own session and group (pgid = sid = pid),
 * which every stop and sweep relies on, and fails the spawn itself when the program is
 * missing, so the job is recorded spawn_failed rather than run.
 */
import assert from "node:assert/strict";
import { closeSync, existsSync, openSync } from "node:fs";
import { groupAlive, signalGroup } from "../jobs/process.ts";
import { isStatic, type SetsidProgram, setsidProgram, spawnLeader } from "../jobs/spawn.ts";

const OPTIONS = {
  env: { PATH: "/usr/bin:/bin" },
  clearEnv: true,
  stdin: "null",
  stderr: "piped",
} as const;

function ids(pid: number): { pgrp: number; session: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { pgrp: Number(fields[2]), session: Number(fields[3]) };
}

/** Every way a job can be started on this machine: the default, and each fallback. */
const WAYS: [string, SetsidProgram, { toFile: boolean }][] = [
  ["the default", setsidProgram(), { toFile: false }],
  ["the default, stdout to a log file", setsidProgram(), { toFile: true }],
  ["posix_spawn", "posix_spawn", { toFile: false }],
  ["posix_spawn, stdout to a log file", "posix_spawn", { toFile: true }],
  ["util-linux setsid", ["/usr/bin/setsid"], { toFile: false }],
  ["util-linux setsid, stdout to a log file", ["/usr/bin/setsid"], { toFile: true }],
  ["detached: true (no setsid program)", null, { toFile: false }],
];
if (isStatic("/bin/busybox")) {
  WAYS.push(["busybox setsid", ["/bin/busybox", "setsid"], { toFile: false }]);
  WAYS.push(["busybox setsid, stdout to a log file", ["/bin/busybox", "setsid"], {
    toFile: true,
  }]);
}

/** Spawns `command` the way under test; `stdout()` resolves to its first line of output. */
async function spawnWay(command: string[], setsid: SetsidProgram, toFile: boolean) {
  if (!toFile) {
    const leader = await spawnLeader(command, { ...OPTIONS, setsid });
    const stdout = async () => {
      for await (const chunk of leader.child.stdout!) {
        return new TextDecoder().decode(chunk).split("\n")[0];
      }
      return "";
    };
    return { ...leader, stdout, cleanup: () => {} };
  }
  const path = Deno.makeTempFileSync();
  const fd = openSync(path, "a");
  try {
    const leader = await spawnLeader(command, { ...OPTIONS, setsid, stdoutFd: fd });
    const stdout = async () => {
      for (let i = 0; i < 500; i++) {
        const text = Deno.readTextFileSync(path);
        if (text.includes("\n")) return text.split("\n")[0];
        await new Promise((r) => setTimeout(r, 10));
      }
      return "";
    };
    return { ...leader, stdout, cleanup: () => Deno.removeSync(path) };
  } catch (e) {
    Deno.removeSync(path);
    throw e;
  } finally {
    closeSync(fd);
  }
}

async function text(stream: AsyncIterable<Uint8Array>): Promise<string> {
  let out = "";
  for await (const chunk of stream) out += new TextDecoder().decode(chunk);
  return out;
}

for (const [way, setsid, { toFile }] of WAYS) {
  Deno.test(`spawnLeader (${way}): the job leads its own session and process group`, async (t) => {
    await t.step(
      "once leading, pgid and sid are the job's pid, and it runs the command",
      async () => {
        const { child, leading, stdout, cleanup } = await spawnWay(
          ["sh", "-c", "echo $$; sleep 60"],
          setsid,
          toFile,
        );
        try {
          await leading;
          assert.deepEqual(ids(child.pid), { pgrp: child.pid, session: child.pid });
          // exec in place: the pid the supervisor records is the script's own.
          assert.equal(Number((await stdout()).trim()), child.pid);
          assert.ok(groupAlive(child.pid));
        } finally {
          signalGroup(child.pid, "SIGKILL");
          await child.status;
          cleanup();
        }
      },
    );

    await t.step("a group signal sent as soon as it leads reaches the job", async () => {
      const { child, leading, cleanup } = await spawnWay(["sleep", "60"], setsid, toFile);
      await leading;
      assert.ok(signalGroup(child.pid, "SIGTERM"));
      const status = await child.status;
      assert.equal(status.signal, "SIGTERM");
      assert.equal(status.success, false);
      cleanup();
    });

    await t.step("its exit status and stderr are the job's own", async () => {
      const { child, cleanup } = await spawnWay(
        ["sh", "-c", "echo oops >&2; exit 3"],
        setsid,
        toFile,
      );
      const [status, err] = await Promise.all([child.status, text(child.stderr)]);
      assert.equal(status.code, 3);
      assert.equal(status.success, false);
      assert.equal(status.signal, null);
      assert.equal(err, "oops\n");
      cleanup();
    });

    await t.step("a job killed by SIGABRT reports SIGABRT (not its alias SIGIOT)", async () => {
      const { child, cleanup } = await spawnWay(["sh", "-c", "kill -ABRT $$"], setsid, toFile);
      const [status] = await Promise.all([child.status, text(child.stderr)]);
      assert.equal(status.signal, "SIGABRT");
      assert.equal(status.code, 128 + 6);
      cleanup();
    });

    await t.step("a script without `#!` runs under /bin/sh, as execvp() runs it", async () => {
      const script = await Deno.makeTempFile();
      await Deno.writeTextFile(script, "echo no shebang >&2\nexit 4\n");
      await Deno.chmod(script, 0o755);
      try {
        const { child, cleanup } = await spawnWay([script], setsid, toFile);
        const [status, err] = await Promise.all([child.status, text(child.stderr)]);
        assert.equal(err, "no shebang\n");
        assert.equal(status.code, 4);
        cleanup();
      } finally {
        await Deno.remove(script);
      }
    });

    await t.step("a program that is not there, or not executable, fails the spawn", async () => {
      const plain = await Deno.makeTempFile();
      const spawn = (command: string[]) => spawnWay(command, setsid, toFile);
      await assert.rejects(() => spawn(["no-such-program-here"]), Deno.errors.NotFound);
      await assert.rejects(() => spawn(["/no/such/program"]), Deno.errors.NotFound);
      await Deno.chmod(plain, 0o644);
      try {
        await assert.rejects(() => spawn([plain]), Deno.errors.PermissionDenied);
      } finally {
        await Deno.remove(plain);
      }
    });
  });
}

Deno.test("posix_spawn is preferred; without FFI, a static busybox, and only a static one", async () => {
  const text = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(text, "#!/bin/sh\n");
    assert.equal(isStatic(text), false);
    assert.equal(isStatic("/bin/sh"), false);
    assert.equal(isStatic("/no/such/file"), false);
  } finally {
    await Deno.remove(text);
  }
  // This process has FFI, so it starts jobs with posix_spawn; one without FFI falls back.
  assert.equal(setsidProgram(), "posix_spawn");
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(
    script,
    `import { setsidProgram } from "${new URL("../jobs/spawn.ts", import.meta.url)}";\n` +
      "console.log(JSON.stringify(setsidProgram()));\n",
  );
  const withoutFfi = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--no-lock", "--allow-read", "--allow-run", script],
    stdout: "piped",
  }).output().finally(() => Deno.remove(script));
  const fallback = JSON.parse(new TextDecoder().decode(withoutFfi.stdout));
  if (isStatic("/bin/busybox")) {
    assert.deepEqual(fallback, ["/bin/busybox", "setsid"]);
  } else {
    assert.notEqual(fallback?.[0], "/bin/busybox");
  }
});

Deno.test("jobs waiting to end hold no thread the runtime's file work needs", async () => {
  // The runtime's blocking-thread pool has 32 threads an isolate: a blocking wait per job
  // would take them all, and a file read would wait for the jobs to end.
  const jobs = await Promise.all(Array.from({ length: 40 }, async () => {
    const { child } = await spawnLeader(["sleep", "5"], { ...OPTIONS, setsid: "posix_spawn" });
    return { child, stdout: text(child.stdout!), stderr: text(child.stderr) };
  }));
  try {
    await Deno.readTextFile("/proc/self/stat");
    // Read while every job still runs: none was reaped to free a thread for it.
    const gone = jobs.filter(({ child }) => !existsSync(`/proc/${child.pid}`));
    assert.deepEqual(gone.map((j) => j.child.pid), []);
  } finally {
    for (const { child } of jobs) signalGroup(child.pid, "SIGKILL");
    await Promise.all(jobs.flatMap((j) => [j.child.status, j.stdout, j.stderr]));
  }
});

Deno.test("posix_spawn gives each job's start time, even for a job that ends at once", async () => {
  const startOf = (pid: number) => {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
  };
  // Still running: the time it gives is the kernel's own.
  const running = await Promise.all(Array.from({ length: 30 }, async () => {
    const { child } = await spawnLeader(["sleep", "5"], { ...OPTIONS, setsid: "posix_spawn" });
    return { child, stdout: text(child.stdout!), stderr: text(child.stderr) };
  }));
  try {
    for (const { child } of running) assert.equal(child.startTicks, startOf(child.pid));
  } finally {
    for (const { child } of running) signalGroup(child.pid, "SIGKILL");
    await Promise.all(running.flatMap((j) => [j.child.status, j.stdout, j.stderr]));
  }
  // Ended and reaped before anyone could read /proc (a tenth of them did, before): each still
  // has one, and within the moments around its spawn.
  const bootTicks = () =>
    Math.floor(Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]) * 100);
  const before = bootTicks();
  const quick = await Promise.all(Array.from({ length: 200 }, async () => {
    const { child } = await spawnLeader(["true"], { ...OPTIONS, setsid: "posix_spawn" });
    await Promise.all([child.status, text(child.stdout!), text(child.stderr)]);
    return child.startTicks;
  }));
  const after = bootTicks();
  for (const ticks of quick) {
    assert.equal(typeof ticks, "number");
    assert.ok(ticks! >= before - 1 && ticks! <= after + 1, `${ticks} in ${before}..${after}`);
  }
});
