/**
 * `deno task models:check`: compares the artifact store with the log. Prints one line per
 * model (ok, corrupt, missing, unrecorded) and exits 1 when any is not ok, 2 when it cannot
 * run. Reads only: it deletes nothing and appends nothing, so it may run beside a server.
 */
import { resolve } from "node:path";
import { ArtifactConfigError, parseArtifactStore } from "../artifacts/config.ts";
import { ConfigError, loadConfig } from "../config.ts";
import { openDatabase } from "../db/client.ts";
import { type CatalogEntry, listCatalog } from "./catalog.ts";

function fail(message: string): never {
  console.error(`models:check: ${message}`);
  Deno.exit(2);
}

/** The report's lines: a header, one row per model, and a summary. */
export function formatReport(entries: CatalogEntry[], store: string): string[] {
  const rows = entries.map((e) => [e.status, e.name, String(e.size), e.problem ?? ""]);
  const head = ["STATUS", "NAME", "SIZE", "PROBLEM"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  const counts = new Map<string, number>();
  for (const e of entries) counts.set(e.status, (counts.get(e.status) ?? 0) + 1);
  const summary = ["ok", "corrupt", "missing", "unrecorded"]
    .map((s) => `${counts.get(s) ?? 0} ${s}`).join(", ");
  return [`store: ${store}`, line(head), ...rows.map(line), `${entries.length} models: ${summary}`];
}

if (import.meta.main) {
  const config = (() => {
    try {
      return loadConfig(Deno.env.toObject());
    } catch (e) {
      fail(e instanceof ConfigError ? e.message : String(e));
    }
  })();
  const artifacts = (() => {
    try {
      return parseArtifactStore(
        config.ARTIFACT_STORE,
        resolve(config.MODELS_DIR),
        Deno.env.toObject(),
      );
    } catch (e) {
      fail(e instanceof ArtifactConfigError ? e.message : String(e));
    }
  })();
  const database = await openDatabase(config.DATABASE_URL, config.DATABASE_AUTH_TOKEN)
    .catch((e) => fail(`DATABASE_URL=${config.DATABASE_URL}: ${(e as Error).message}`));
  let entries: CatalogEntry[];
  try {
    entries = await listCatalog({ db: database.db, artifacts }, { check: true });
  } catch (e) {
    fail(`${artifacts.describe()}: ${(e as Error).message}`);
  } finally {
    database.close();
    artifacts.close();
  }
  for (const line of formatReport(entries, artifacts.describe())) console.log(line);
  Deno.exit(entries.every((e) => e.status === "ok") ? 0 : 1);
}
