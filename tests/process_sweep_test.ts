/**
 * killJobProcesses shares one /proc pass among jobs ending together (issue 12). Sharing must
 * not weaken it: every process carrying one of the ids dies, processes of other jobs are
 * left alone, and a job with no process left is answered too. Real processes throughout.
 */
import assert from "node:assert/strict";
import { findJobProcesses, killJobProcesses, readStartTicks } from "../jobs/process.ts";
import { rememberedTicks } from "../jobs/sweep.ts";

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
