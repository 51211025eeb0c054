/**
 * `deno task bench [name...]`: runs the benchmarks of issue 4 against real server processes
 * on this machine, prints one table, and writes bench/results/<name>.json for each.
 */
import { accept } from "./accept.ts";
import { dispatch } from "./dispatch.ts";
import { growth } from "./growth.ts";
import { e2e } from "./e2e.ts";
import { coldstart } from "./coldstart.ts";
import { cpu } from "./cpu.ts";
import { logs } from "./logs.ts";
import { peer } from "./peer.ts";
import { reads } from "./reads.ts";
import { rebuild } from "./rebuild.ts";
import { stream } from "./stream.ts";
import type { Bench, BenchContext } from "./lib/context.ts";
import { formatRows, machine, writeResult } from "./lib/machine.ts";

const BENCHES: Record<string, Bench> = {
  accept,
  dispatch,
  reads,
  logs,
  rebuild,
  coldstart,
  stream,
  peer,
  growth,
  e2e,
  cpu,
};

const names = Deno.args.length ? Deno.args : Object.keys(BENCHES);
for (const n of names) {
  if (!BENCHES[n]) {
    console.error(`unknown benchmark ${n}; known: ${Object.keys(BENCHES).join(", ")}`);
    Deno.exit(2);
  }
}

const tmp = await Deno.makeTempDir({ prefix: "trainer-bench-" });
let big: Promise<string> | null = null;
const ctx: BenchContext = {
  tmp,
  log: (m) => console.log(`  ${m}`),
  bigDatabase: () => big ??= import("./lib/big_db.ts").then((m) => m.bigDatabase(ctx)),
};

const m = machine();
console.log(`machine: ${m.nproc} CPUs (${m.cpu_model}), ${m.memory_mb} MB, deno ${m.deno}`);
const rows: string[] = [];
let failed = 0;
try {
  for (const n of names) {
    console.log(`\n== ${n}`);
    const started = performance.now();
    try {
      const result = await BENCHES[n](ctx);
      const path = await writeResult(result);
      const lines = formatRows(result);
      rows.push(...lines);
      for (const l of lines) console.log(`  ${l}`);
      console.log(`  (${((performance.now() - started) / 1000).toFixed(1)} s; ${path})`);
      if (!result.checks.every((c) => c.pass)) failed++;
    } catch (e) {
      failed++;
      rows.push(`${n.padEnd(10)} | ERROR: ${e instanceof Error ? e.message : e}`);
      console.error(e);
    }
  }
} finally {
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}
console.log(
  `\n${"benchmark".padEnd(10)} | ${"figure".padEnd(34)} | ${"value".padEnd(16)} | ${
    "target".padEnd(14)
  } | result`,
);
for (const r of rows) console.log(r);
console.log(`\n${names.length - failed} of ${names.length} benchmarks met every target`);
