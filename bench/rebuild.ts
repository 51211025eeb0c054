/**
 * Rebuild: `deno task rebuild` (db/rebuild_cli.ts) on a copy of the 2,000,000-event
 * database; wall time of the whole command, and the rebuilt table must equal the original.
 */
import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import { copyOfBigDatabase } from "./lib/big_db.ts";
import type { BenchContext } from "./lib/context.ts";
import type { BenchResult } from "./lib/machine.ts";
import { sampleRss } from "./lib/procfs.ts";
import { SERVED_REPO } from "./lib/server.ts";

export async function rebuild(ctx: BenchContext): Promise<BenchResult> {
  const dbPath = await copyOfBigDatabase(ctx, "rebuild");
  const before = tableDigest(dbPath);
  ctx.log("rebuild: running deno task rebuild on 2,000,000 events");
  const started = performance.now();
  const child = new Deno.Command("deno", {
    args: ["run", "--allow-all", "--frozen", "db/rebuild_cli.ts"],
    cwd: SERVED_REPO,
    env: { DATABASE_URL: `file:${dbPath}` },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const rss = sampleRss(child.pid, 200);
  const out = await child.output();
  const seconds = (performance.now() - started) / 1000;
  const mem = rss.stop();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`rebuild failed: ${text}`);
  const after = tableDigest(dbPath);
  const reported = /rebuilt (\d+) jobs in (\d+) ms/.exec(text);
  return {
    name: "rebuild",
    checks: [
      {
        figure: "rebuild 2,000,000 events (wall)",
        value: seconds,
        unit: "s",
        target: "<= 20",
        pass: seconds <= 20,
      },
      {
        figure: "rebuilt rows equal the original",
        value: after.rows,
        unit: after.digest === before.digest ? "rows, equal" : "rows, DIFFERENT",
        target: "equal",
        pass: after.digest === before.digest && after.rows === 100_000,
      },
    ],
    details: {
      command: "deno run --allow-all --frozen db/rebuild_cli.ts (= deno task rebuild)",
      events: 2_000_000,
      jobs_reported: reported ? Number(reported[1]) : null,
      rebuild_ms_reported: reported ? Number(reported[2]) : null,
      wall_s: seconds,
      peak_rss_mb: Math.round(mem.peak),
      table_sha256_before: before.digest,
      table_sha256_after: after.digest,
    },
  };
}

/** SHA-256 of every `jobs` row in job id order. */
function tableDigest(path: string): { digest: string; rows: number } {
  const db = new DatabaseSync(path, { readOnly: true });
  const hash = createHash("sha256");
  let rows = 0;
  for (const r of db.prepare("SELECT * FROM jobs ORDER BY job_id").iterate()) {
    hash.update(JSON.stringify(r));
    rows++;
  }
  db.close();
  return { digest: hash.digest("hex"), rows };
}
