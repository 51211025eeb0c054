/**
 * Reuse of a finished model (`retrain: false`): the recorded models whose spec matches. Kept
 * apart from spec.ts, which the supervisor thread loads: this side reads the projection, and
 * with it drizzle and the database client, which that thread has no use for.
 */
import type { ArtifactStore } from "../artifacts/store.ts";
import type { Db } from "../db/client.ts";
import { modelsWithSpec } from "../projections/models.ts";
import { storeUnavailable } from "./catalog.ts";

/** A finished model that can stand in for a new training job. */
export interface Reusable {
  /** The model's location in the artifact store: a file path or an s3:// URL. */
  path: string;
  fingerprint: string;
}

/**
 * For each type, the newest recorded model whose spec fingerprint is the one wanted and whose
 * file is in the store with its recorded size (one stat per candidate, newest first). Files
 * the log has no record of are never reused: nothing vouches for their bytes nor their spec.
 */
export async function reusableModels(
  deps: { db: Db; artifacts: ArtifactStore },
  wanted: ReadonlyMap<string, string>,
): Promise<Map<string, Reusable | null>> {
  const found = new Map<string, Reusable | null>();
  for (const [type, fingerprint] of wanted) {
    let match: Reusable | null = null;
    for (const row of await modelsWithSpec(deps.db, type, fingerprint)) {
      const stat = await deps.artifacts.stat(row.name).catch((e) => {
        throw storeUnavailable(deps.artifacts, e);
      });
      if (stat && stat.size === row.size) {
        match = { path: row.location, fingerprint };
        break;
      }
    }
    found.set(type, match);
  }
  return found;
}
