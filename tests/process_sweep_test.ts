/**
 * killJobProcesses shares one /proc pass among jobs ending together (issue 12). Sharing must
 * not weaken it: every process carrying one of the ids dies, processes of other jobs are
 * left alone, and a job with no process left is answered too. Real processes, but for the
 * moment of an exec, which no real process can be held in: those tests read a fake /proc.
 */
import assert from "node:assert/strict";
import {
  findJobProcesses,
  killJobProcesses,
  readStartTicks,
  signalGroup,
} from "../jobs/process.ts";
import { RECHECKS, rememberedTicks, trackLeader } from "../jobs/sweep.ts";
import { spawnLeader } from "../jobs/spawn.ts";
import { useProcFs } from "../jobs/procfs.ts";

function spawnWithId(jobId: string): Deno.ChildProcess {
  // setsid: outside any group we know of, like a daemon that escaped its job.
  return new Deno.Command("setsid", {
    args: ["sleep", "60"],
    env: { TRAIN_JOB_ID: jobId },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/**
 * The processes carrying one of `ids` that run `sleep` by now: `setsid` execs it a moment
 * after it starts, and for a moment of that exec its environment reads empty, so a process
 * found before its exec may be missed by a pass that looks during it.
 */
function sleeping(ids: string[]): number[] {
  return [...findJobProcesses(new Set(ids)).keys()].filter((pid) => {
    try {
      return Deno.readTextFileSync(`/proc/${pid}/comm`).trim() === "sleep";
    } catch {
      return false;
    }
  });
}

Deno.test("stray sweeps of jobs ending together kill exactly their processes", async (t) => {
  const ids = ["sweep-a", "sweep-b", "sweep-c"].map((p) => `${p}-${crypto.randomUUID()}`);
  const bystander = `sweep-bystander-${crypto.randomUUID()}`;
  const children = [spawnWithId(ids[0]), spawnWithId(ids[0]), spawnWithId(ids[1])];
  const other = spawnWithId(bystander);
  try {
    // setsid may fork before exec: wait until every process carries its id and runs sleep.
    const deadline = Date.now() + 10_000;
    while (sleeping([...ids, bystander]).length < 4) {
      assert.ok(Date.now() < deadline, "the test processes did not start");
      await new Promise((r) => setTimeout(r, 20));
    }
    const results = await Promise.all(ids.map((id) => killJobProcesses(id)));

    await t.step("each job's processes were killed and are gone", () => {
      assert.equal(results[0].killed.length, 2);
      assert.equal(results[1].killed.length, 1);
      assert.ok(results.every((r) => r.gone));
      assert.equal(findJobProcesses(new Set(ids)).size, 0);
    });
    await t.step("a job with nothing left is answered at once, killing nothing", () => {
      assert.deepEqual(results[2], { killed: [], gone: true });
    });
    await t.step("another job's process lives on", () => {
      assert.equal(findJobProcesses(new Set([bystander])).size, 1);
    });
  } finally {
    for (const c of [...children, other]) {
      try {
        c.kill("SIGKILL");
      } catch {
        // already gone
      }
      await c.status;
    }
    await killJobProcesses(bystander);
  }
});

Deno.test("a sweep from the job's start kills its processes, even one born between passes", async (t) => {
  const id = `sweep-since-${crypto.randomUUID()}`;
  const older = `sweep-older-${crypto.randomUUID()}`;
  const children: Deno.ChildProcess[] = [];
  const carrying = async (jobId: string) => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const pids = sleeping([jobId]);
      if (pids.length) return pids[0];
      assert.ok(Date.now() < deadline, "the test process did not start");
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    children.push(spawnWithId(older));
    const olderPid = await carrying(older);
    // Start ticks count 10 ms steps: the job starts in a later one.
    await new Promise((r) => setTimeout(r, 50));
    children.push(spawnWithId(id));
    const first = await carrying(id);
    const since = readStartTicks(first)!;
    assert.ok(readStartTicks(olderPid)! < since);

    await t.step("the job's process is killed", async () => {
      const result = await killJobProcesses(id, 1000, { since });
      assert.deepEqual(result, { killed: [first], gone: true });
    });
    await t.step("one started after the previous pass is found too", async () => {
      children.push(spawnWithId(id));
      const second = await carrying(id);
      const result = await killJobProcesses(id, 1000, { since });
      assert.deepEqual(result, { killed: [second], gone: true });
    });
    await t.step("a process older than the job is not the job's and is not read", async () => {
      const result = await killJobProcesses(older, 1000, { since });
      assert.deepEqual(result, { killed: [], gone: true });
      assert.equal(findJobProcesses(new Set([older])).size, 1);
    });
  } finally {
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch {
        // already gone
      }
      await c.status;
    }
    await killJobProcesses(older);
  }
});

Deno.test("a remembered pid the counter passed since is read again", () => {
  const previous = new Map([[100, 7], [5_000, 8], [31_000, 9]]);
  // The counter went from 4,000 to 6,000 between two passes.
  assert.equal(rememberedTicks(100, previous, 4_000, 6_000), 7, "below: the same process");
  assert.equal(rememberedTicks(5_000, previous, 4_000, 6_000), undefined, "passed: maybe reused");
  assert.equal(rememberedTicks(31_000, previous, 4_000, 6_000), 9, "above: not reached yet");
  assert.equal(rememberedTicks(100, previous, 4_000, null), undefined, "no counter: read all");
});

/** A process of a fake /proc: each read of its environment takes the next of `environs`. */
interface FakeProcess {
  state: string;
  flags?: number;
  /** Its stat's env_end, by how many times its environment was read before. */
  envEnd: (reads: number) => number;
  environs: string[];
}

/** A fake /proc for the sweep; `passes` counts the passes (each reads ns_last_pid once). */
function fakeProc(processes: Map<number, FakeProcess>, onRead?: (pid: number, n: number) => void) {
  const reads = new Map<number, number>();
  const state = { passes: 0, reads };
  const restore = useProcFs({
    lastPid: () => (state.passes++, 900_000),
    pids: () => processes.keys(),
    stat: (pid) => {
      const p = processes.get(pid);
      if (!p) return null;
      return {
        state: p.state,
        pgrp: pid,
        flags: p.flags ?? 0,
        ticks: 1,
        envEnd: p.envEnd(reads.get(pid) ?? 0),
      };
    },
    environ: (pid) => {
      const p = processes.get(pid);
      if (!p) return null;
      const n = reads.get(pid) ?? 0;
      reads.set(pid, n + 1);
      onRead?.(pid, n + 1);
      return p.environs[Math.min(n, p.environs.length - 1)];
    },
    kill: (pid) => processes.delete(pid),
  });
  return { state, restore };
}

Deno.test("a stray caught mid-exec, its environment not set up yet, is read again and killed", async (t) => {
  // No real process can be held inside its exec, so the pass reads a fake /proc.
  const id = "job-mid-exec";
  const carrying = `TRAIN_JOB_ID=${id}\0PATH=/usr/bin\0`;
  const processes = new Map<number, FakeProcess>([
    // Its first read falls inside the exec (env_end still 0); the next one sees the environment.
    [900_001, { state: "R", envEnd: (n) => n < 2 ? 0 : 7, environs: ["", carrying] }],
    // Its exec ended between the read and the stat: read once more at once.
    [900_005, { state: "R", envEnd: () => 7, environs: ["", carrying] }],
    // Started with `env -i`: always empty, env_end set. Read once more, never waited for.
    [900_002, { state: "S", envEnd: () => 7, environs: [""] }],
    // A kernel thread and a zombie read empty too, and are not read again.
    [900_003, { state: "S", flags: 0x200000, envEnd: () => 0, environs: [""] }],
    [900_004, { state: "Z", envEnd: () => 0, environs: [""] }],
    // Exiting (PF_EXITING): its memory is going, env_end reads 0, and it is not waited for.
    [900_007, { state: "D", flags: 0x4, envEnd: () => 0, environs: [""] }],
    // Never set up while the sweep looks: it may not hold the pass for long.
    [900_006, { state: "D", envEnd: () => 0, environs: [""] }],
  ]);
  const { state, restore } = fakeProc(processes);
  try {
    const result = await killJobProcesses(id, 5_000, { since: 1 });
    await t.step("both strays are found and killed", () => {
      assert.deepEqual(result.killed.toSorted(), [900_001, 900_005]);
      assert.equal(result.gone, true);
      assert.ok(!processes.has(900_001) && !processes.has(900_005));
    });
    await t.step("the one caught in its exec was read again after a wait, once", () => {
      assert.equal(state.reads.get(900_001), 2);
    });
    await t.step("an environment that is really empty is read twice a pass, not waited on", () => {
      // The kill pass, then the pass that finds nothing left.
      assert.equal(state.passes, 2);
      assert.equal(state.reads.get(900_002), 2 * state.passes);
    });
    await t.step("one that stays in its exec is read again a bounded number of times", () => {
      assert.equal(state.reads.get(900_006), state.passes * (1 + RECHECKS));
    });
    await t.step("a kernel thread, a zombie and an exiting process are read once a pass", () => {
      assert.equal(state.reads.get(900_003), state.passes);
      assert.equal(state.reads.get(900_004), state.passes);
      assert.equal(state.reads.get(900_007), state.passes);
    });
  } finally {
    restore();
  }
});

Deno.test("a request made while a pass waits is answered by the next pass", async () => {
  const late: Promise<number>[] = [];
  // Read empty mid-exec, so the first pass waits; it turns out not to be a job's.
  const processes = new Map<number, FakeProcess>([
    [900_010, { state: "S", envEnd: (n) => n < 2 ? 0 : 7, environs: ["", "X=1\0"] }],
  ]);
  const { state, restore } = fakeProc(processes, (_pid, n) => {
    // Inside the first pass's wait: the same job asks again, and another job asks.
    if (n !== 2) return;
    for (const id of ["job-a", "job-b"]) {
      late.push(killJobProcesses(id, 5_000).then(() => state.passes));
    }
  });
  try {
    const first = await killJobProcesses("job-a", 5_000).then(() => state.passes);
    assert.equal(first, 1);
    assert.deepEqual(await Promise.all(late), [2, 2]);
  } finally {
    restore();
  }
});

Deno.test("a caller answered by a pass can ask again at once", async () => {
  const { restore } = fakeProc(new Map());
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    // Asked again after 0 to 5 microtasks: the moment the last pass ends must leave no gap
    // in which a new request finds a pass running and none comes.
    for (let ticks = 0; ticks <= 5; ticks++) {
      await killJobProcesses(`job-first-${ticks}`, 100);
      for (let i = 0; i < ticks; i++) await Promise.resolve();
      const hang = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not answered (${ticks} ticks)`)), 5_000);
      });
      const again = await Promise.race([killJobProcesses(`job-again-${ticks}`, 100), hang]);
      clearTimeout(timer);
      assert.deepEqual(again, { killed: [], gone: true });
    }
  } finally {
    clearTimeout(timer);
    restore();
  }
});

Deno.test("recovery's scan finds a job's process caught in its exec", async (t) => {
  const carrying = (id: string) => `TRAIN_JOB_ID=${id}\0`;
  const processes = new Map<number, FakeProcess>([
    [900_020, { state: "R", envEnd: (n) => n < 2 ? 0 : 7, environs: ["", carrying("job-e")] }],
    [900_021, { state: "S", envEnd: () => 7, environs: ["", carrying("job-f")] }],
    [900_022, { state: "S", envEnd: () => 7, environs: [""] }],
    // Never set up while the scan looks: given up on after a few milliseconds.
    [900_023, { state: "D", envEnd: () => 0, environs: [""] }],
  ]);
  const { state, restore } = fakeProc(processes);
  try {
    const found = findJobProcesses(null);
    await t.step("both processes caught in their exec are found", () => {
      assert.deepEqual(
        [...found].toSorted(([a], [b]) => a - b),
        [[900_020, "job-e"], [900_021, "job-f"]],
      );
    });
    await t.step(
      "one with no environment is read twice, and one stuck in its exec given up on",
      () => {
        assert.equal(state.reads.get(900_022), 2);
        assert.ok((state.reads.get(900_023) ?? 0) > 2);
      },
    );
  } finally {
    restore();
  }
});

Deno.test("a running job's leader is left out of sweeps, and its descendants are not", async () => {
  const id = `sweep-leader-${crypto.randomUUID()}`;
  const { child } = await spawnLeader(["sh", "-c", "sleep 30 & wait"], {
    clearEnv: true,
    env: { PATH: "/usr/bin:/bin", TRAIN_JOB_ID: id },
    stdin: "null",
    stderr: "piped",
  });
  trackLeader(child.pid, child.status);
  const stderr = (async () => {
    for await (const _ of child.stderr) { /* nothing expected */ }
  })();
  try {
    for (let i = 0; findJobProcesses(new Set([id])).size < 2; i++) {
      assert.ok(i < 500, "the job's sleep never started");
      await new Promise((r) => setTimeout(r, 10));
    }
    const swept = await killJobProcesses(id, 1000, { since: readStartTicks(child.pid) });
    const [sleep] = [...findJobProcesses(new Set([id])).keys()].filter((p) => p !== child.pid);
    assert.equal(sleep, undefined, "the leader's child was left alive");
    assert.equal(swept.killed.length, 1);
    assert.notEqual(swept.killed[0], child.pid);
    assert.equal(swept.gone, true);
    // The leader was not signalled: its `wait` ended with its child, and it exited by itself.
    assert.deepEqual(await child.status, { success: true, code: 0, signal: null });
  } finally {
    signalGroup(child.pid, "SIGKILL");
    await child.status;
    await stderr;
  }
});
