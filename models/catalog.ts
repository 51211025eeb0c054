/**
 * The model catalog: the `models` projection (what the log recorded) joined with what the
 * artifact store holds. Listing stats nothing per model: one `list()` of the store tells
 * which recorded files are present. A check (reconcile) also compares each file's sha256 with
 * its record. Nothing here deletes anything.
 */
import { createHash } from "node:crypto";
import { basename, join } from "node:path";
import { sha256File } from "../artifacts/checksum.ts";
import { FolderStore } from "../artifacts/folder_store.ts";
import type { ArtifactEntry, ArtifactStore } from "../artifacts/store.ts";
import type { Db } from "../db/client.ts";
import { unfinishedArtifactPaths } from "../db/queries.ts";
import { UnavailableError } from "../errors.ts";
import { liveModels, type ModelRow } from "../projections/models.ts";
import { displayPath, isSidecar, modelTypeOf, readMetadata } from "./artifacts.ts";

/**
 * - `ok`: recorded, and the file is in the store (with `check`: its sha256 matches too).
 * - `missing`: recorded, but the file is gone from the store.
 * - `corrupt` (only with `check`): the file's size or sha256 differs from its record.
 * - `unrecorded`: a file in the store that the log does not know (made before records
 *   existed, copied in by hand, or left after a delete that could not remove it).
 */
export type ModelStatus = "ok" | "missing" | "corrupt" | "unrecorded";

export interface CatalogEntry {
  name: string;
  type: string;
  /** The file: relative to the working directory when inside it, or an s3:// URL. */
  path: string;
  size: number;
  /** UTC to the second, without a zone (the contract's format). */
  modified: string;
  sha256: string | null;
  job_id: string | null;
  metrics: Record<string, unknown> | null;
  metadata: Record<string, unknown> | null;
  stored_in: string;
  status: ModelStatus;
  /** Why the status is not `ok`, in words; null when it is. */
  problem: string | null;
  /** For ordering: the record's time, or the file's for an unrecorded one. */
  time: number;
}

export interface CatalogDeps {
  db: Db;
  artifacts: ArtifactStore;
}

export interface CatalogQuery {
  type?: string;
  limit?: number;
  /** Compare every file's sha256 with its record (reads every file of a folder store). */
  check?: boolean;
}

/** Models recorded and files stored, newest first. */
export async function listCatalog(
  deps: CatalogDeps,
  q: CatalogQuery = {},
): Promise<CatalogEntry[]> {
  const [rows, files, unfinished] = await Promise.all([
    liveModels(deps.db, { type: q.type }),
    storedFiles(deps.artifacts),
    unfinishedArtifactPaths(deps.db),
  ]);
  // A running job's model file is being written: it is listed once its job records it.
  const writing = new Set(unfinished.map((p) => basename(p)));
  const entries: CatalogEntry[] = [];
  for (const row of rows) entries.push(await recordEntry(deps.artifacts, row, files, q.check));
  const recorded = new Set(rows.map((r) => r.name));
  // Recorded models of other types are known too: only when filtering are they absent above.
  const known = q.type ? new Set((await liveModels(deps.db)).map((r) => r.name)) : recorded;
  for (const file of files.values()) {
    if (known.has(file.name) || writing.has(file.name)) continue;
    // Without a check, only files named like models are listed, as before records existed.
    if (!q.check && modelTypeOf(file.name) === null) continue;
    const entry = await unrecordedEntry(deps.artifacts, file, q.check);
    if (!q.type || entry.type === q.type) entries.push(entry);
  }
  entries.sort((a, b) => b.time - a.time || a.name.localeCompare(b.name));
  return q.limit === undefined ? entries : entries.slice(0, q.limit);
}

/** The store's model files by name; metadata and unfinished writes are left out. */
async function storedFiles(store: ArtifactStore): Promise<Map<string, ArtifactEntry>> {
  const files = new Map<string, ArtifactEntry>();
  try {
    for await (const e of store.list()) if (!isSidecar(e.name)) files.set(e.name, e);
  } catch (e) {
    throw storeUnavailable(store, e);
  }
  return files;
}

/**
 * A store that cannot be read is the operator's to fix, not a server bug: 503 naming it (a
 * folder that became a file or unreadable, a bucket that went away).
 */
export function storeUnavailable(store: ArtifactStore, e: unknown): UnavailableError {
  const which = store instanceof FolderStore ? "MODELS_DIR" : "ARTIFACT_STORE";
  return new UnavailableError(
    `the artifact store (${which}: ${store.describe()}) cannot be read: ` +
      `${(e as Error).message}; ask the operator to fix it`,
  );
}

/**
 * Why a recorded model's file is not in `store`. A model a remote worker kept in its own
 * folder (hosted mode without a shared store) is not lost: it is on that worker's machine.
 */
export function notInStore(
  store: ArtifactStore,
  row: Pick<ModelRow, "stored_in" | "worker_id">,
): string {
  const here = store.describe();
  if (row.stored_in === here) return `the file is not in ${here}`;
  return `the file was stored in ${row.stored_in} by worker ${row.worker_id}, not in this ` +
    `server's store (${here}); to list and serve such models here, give the API and its ` +
    `workers one ARTIFACT_STORE=s3://…`;
}

async function recordEntry(
  store: ArtifactStore,
  row: ModelRow,
  files: ReadonlyMap<string, ArtifactEntry>,
  check = false,
): Promise<CatalogEntry> {
  const file = files.get(row.name);
  let status: ModelStatus = file ? "ok" : "missing";
  let problem = file ? null : notInStore(store, row);
  if (file && check) {
    const actual = await storedSha256(store, row.name);
    if (file.size !== row.size) {
      status = "corrupt";
      problem = `the file has ${file.size} bytes; ${row.size} were recorded`;
    } else if (actual !== row.sha256) {
      status = "corrupt";
      problem = `the file's sha256 is ${actual ?? "unknown"}; ${row.sha256} was recorded`;
    }
  }
  return {
    name: row.name,
    type: row.model_type,
    path: row.location.startsWith("s3://") ? row.location : displayPath(row.location),
    size: file?.size ?? row.size,
    modified: contractTime(file?.modified ?? new Date(row.created_at)),
    sha256: row.sha256,
    job_id: row.job_id,
    metrics: row.metrics ?? null,
    metadata: row.metadata ?? null,
    stored_in: row.stored_in,
    status,
    problem,
    time: Date.parse(row.created_at),
  };
}

async function unrecordedEntry(
  store: ArtifactStore,
  file: ArtifactEntry,
  check = false,
): Promise<CatalogEntry> {
  // A folder's metadata sidecar is read, as the listing did before records existed.
  const metadata = store instanceof FolderStore
    ? await readMetadata(join(store.folder, file.name))
    : null;
  const metaType = typeof metadata?.model_type === "string" ? metadata.model_type : null;
  return {
    name: file.name,
    type: modelTypeOf(file.name) ?? metaType ?? "unknown",
    path: displayPath(locationOf(store, file.name)),
    size: file.size,
    modified: contractTime(file.modified),
    sha256: check ? await storedSha256(store, file.name) : null,
    job_id: typeof metadata?.job_id === "string" ? metadata.job_id : null,
    metrics: metadata && isObject(metadata.metrics) ? metadata.metrics : null,
    metadata,
    stored_in: store.describe(),
    status: "unrecorded",
    problem: "the log has no record of this file",
    time: file.modified.getTime(),
  };
}

/**
 * The sha256 of a stored file: a folder's file is hashed; an S3 object's is the sha256 its
 * upload stored as metadata (x-amz-meta-sha256, verified at upload), or, without it, the
 * bytes are read and hashed. Null when the file is gone.
 */
export async function storedSha256(store: ArtifactStore, name: string): Promise<string | null> {
  if (store instanceof FolderStore) {
    return await sha256File(join(store.folder, name)).catch((e) => {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    });
  }
  const stat = await store.stat(name);
  if (!stat) return null;
  if (stat.sha256) return stat.sha256;
  const read = await store.get(name);
  if (!read) return null;
  const hash = createHash("sha256");
  for await (const chunk of read.body) hash.update(chunk);
  return hash.digest("hex");
}

/** Where `name` is (or would be) in `store`: a file path or an s3:// URL. */
export function locationOf(store: ArtifactStore, name: string): string {
  if (store instanceof FolderStore) return join(store.folder, name);
  // An S3 store describes itself as s3://bucket[/prefix]. Not an instanceof check: that would
  // load the AWS SDK (tens of MB) into every server, whatever its store.
  return `${store.describe()}/${name}`;
}

/** UTC to the second without a zone, as the contract shows `modified`. */
function contractTime(d: Date): string {
  return d.toISOString().slice(0, 19);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === "object" && !Array.isArray(v);
}
