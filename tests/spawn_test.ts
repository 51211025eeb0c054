/**
 * spawnLeader starts a job as the leader of its own session and group (pgid = sid = pid),
 * which every stop and sweep relies on, and fails the spawn itself when the program is
 * missing, so the job is recorded spawn_failed rather than run.
 */
import assert from "node:assert/strict";
import { groupAlive, signalGroup } from "../jobs/process.ts";
import { isStatic, type SetsidProgram, setsidProgram, spawnLeader } from "../jobs/spawn.ts";

const OPTIONS = {
  env: { PATH: "/usr/bin:/bin" },
  clearEnv: true,
  stdin: "null",
  stdout: "piped",
  stderr: "null",
} as const;

function ids(pid: number): { pgrp: number; session: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { pgrp: Number(fields[2]), session: Number(fields[3]) };
}

/** Every way a job can be started on this machine: the default, and each fallback. */
const WAYS: [string, SetsidProgram][] = [
  ["the default", setsidProgram()],
  ["util-linux setsid", ["/usr/bin/setsid"]],
  ["detached: true (no setsid program)", null],
];
if (isStatic("/bin/busybox")) WAYS.push(["busybox setsid", ["/bin/busybox", "setsid"]]);

for (const [way, setsid] of WAYS) {
  Deno.test(`spawnLeader (${way}): the job leads its own session and process group`, async (t) => {
    await t.step(
      "once leading, pgid and sid are the job's pid, and it runs the command",
      async () => {
        const { child, leading } = spawnLeader(["sh", "-c", "echo $$; sleep 60"], {
          ...OPTIONS,
          setsid,
        });
        try {
          await leading;
          assert.deepEqual(ids(child.pid), { pgrp: child.pid, session: child.pid });
          const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
          const { value } = await reader.read();
          // exec in place: the pid the supervisor records is the script's own.
          assert.equal(Number(value?.trim()), child.pid);
          reader.releaseLock();
          assert.ok(groupAlive(child.pid));
        } finally {
          signalGroup(child.pid, "SIGKILL");
          await child.status;
          await child.stdout.cancel().catch(() => {});
        }
      },
    );

    await t.step("a group signal sent as soon as it leads reaches the job", async () => {
      const { child, leading } = spawnLeader(["sleep", "60"], {
        ...OPTIONS,
        stdout: "null",
        setsid,
      });
      await leading;
      assert.ok(signalGroup(child.pid, "SIGTERM"));
      assert.equal((await child.status).signal, "SIGTERM");
    });

    await t.step("its exit status and stderr are the job's own", async () => {
      const { child } = spawnLeader(["sh", "-c", "echo oops >&2; exit 3"], {
        ...OPTIONS,
        stdout: "null",
        stderr: "piped",
        setsid,
      });
      const out = await child.output();
      assert.equal(out.code, 3);
      assert.equal(new TextDecoder().decode(out.stderr), "oops\n");
    });

    await t.step("a program that is not there, or not executable, fails the spawn", async () => {
      const plain = await Deno.makeTempFile();
      const o = { ...OPTIONS, setsid };
      assert.throws(() => spawnLeader(["no-such-program-here"], o), Deno.errors.NotFound);
      assert.throws(() => spawnLeader(["/no/such/program"], o), Deno.errors.NotFound);
      await Deno.chmod(plain, 0o644);
      try {
        assert.throws(() => spawnLeader([plain], o), Deno.errors.PermissionDenied);
      } finally {
        await Deno.remove(plain);
      }
    });
  });
}

Deno.test("a static busybox is preferred, and only a static one counts", async () => {
  const text = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(text, "#!/bin/sh\n");
    assert.equal(isStatic(text), false);
    assert.equal(isStatic("/bin/sh"), false);
    assert.equal(isStatic("/no/such/file"), false);
  } finally {
    await Deno.remove(text);
  }
  if (isStatic("/bin/busybox")) {
    assert.deepEqual(setsidProgram(), ["/bin/busybox", "setsid"]);
  } else {
    assert.notEqual(setsidProgram()?.[0], "/bin/busybox");
  }
});
