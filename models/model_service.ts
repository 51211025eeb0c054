/**
 * Model use cases: find one to download, delete one. Checks that need the projection run
 * inside the unit of work, so they are decided on the same committed state as the event.
 */
import { isArtifactName } from "../artifacts/store.ts";
import { ConflictError, NotFoundError } from "../errors.ts";
import type { JobDeps } from "../jobs/service.ts";
import { jobsUsingModel, modelByName, type ModelRow } from "../projections/models.ts";
import { metadataPathFor } from "./artifacts.ts";

/** The live record of `name`; NotFoundError when the log has none or it was deleted. */
export async function recordedModel(deps: JobDeps, name: string): Promise<ModelRow> {
  const row = isArtifactName(name) ? await modelByName(deps.store.database.db, name) : undefined;
  if (!row) {
    throw new NotFoundError(
      `no model named "${name.slice(0, 200)}" is recorded; GET /train/models/available ` +
        `lists them (files without a record are listed as unrecorded and cannot be served)`,
    );
  }
  if (row.deleted_at) {
    throw new NotFoundError(`model "${name}" was deleted at ${row.deleted_at}`);
  }
  return row;
}

export interface Deleted {
  model: ModelRow;
  /** When the model_deleted event was recorded. */
  deleted_at: string;
  /** False when the store no longer had the file (or could not remove it: see `warning`). */
  file_removed: boolean;
  warning: string | null;
}

/**
 * Records `model_deleted` in the owning job's stream, then removes the file and its metadata
 * from the store. The event comes first: if the removal fails, the file is left without a
 * live record, which a check reports as `unrecorded`; the other order could leave a record
 * of a file that is gone. Refused (409) while a job that is not finished uses the model
 * (see jobsUsingModel).
 */
export async function deleteModel(deps: JobDeps, name: string, reason: string): Promise<Deleted> {
  const db = deps.store.database.db;
  const { model, at } = await deps.store.run(async (uow) => {
    const model = await recordedModel(deps, name);
    const users = await jobsUsingModel(db, model);
    if (users.length) {
      throw new ConflictError(
        `model "${name}" is in use by ${users.length === 1 ? "a job" : "jobs"} not finished ` +
          `(${users.join(", ")}); cancel ${users.length === 1 ? "it" : "them"} or wait, then retry`,
        users.map((job_id) => ({ job_id })),
      );
    }
    const [event] = await uow.execute(model.job_id, { type: "delete_model", name, reason });
    return { model, at: event.at };
  });
  let fileRemoved = false;
  let warning: string | null = null;
  try {
    fileRemoved = await deps.artifacts.delete(name);
    const meta = metadataPathFor(name);
    if (meta !== name && isArtifactName(meta)) await deps.artifacts.delete(meta);
  } catch (e) {
    warning = `the deletion is recorded, but the file could not be removed from ` +
      `${deps.artifacts.describe()}: ${(e as Error).message}; it is now listed as unrecorded`;
    console.error(`[trainer] ${warning}`);
  }
  return { model, deleted_at: at, file_removed: fileRemoved, warning };
}
