/**
 * Stores a finished model in the artifact store and builds its record for the log. Runs
 * where the job ran (the local supervisor, or a remote worker) after the script exited 0:
 * the job completes only once this returns a record, so a completed job's model is durable
 * and its checksum verified.
 */
import { basename, dirname, resolve } from "node:path";
import { measureFile } from "../artifacts/checksum.ts";
import { FolderStore } from "../artifacts/folder_store.ts";
import type { ArtifactStore } from "../artifacts/store.ts";
import type { ArtifactRecord } from "../jobs/events.ts";
import { metadataPathFor, readMetadataTextSync } from "./artifacts.ts";

/** Tries of a whole store (model, then metadata) before the job fails with upload_failed. */
const TRIES = 3;

/**
 * The model at `path` (in the job's models folder), stored: its record, or why it could not
 * be stored. An S3 upload streams the file (never read into memory) and is verified by the
 * store; a folder store that is the models folder itself only measures the file.
 */
export async function storeModel(
  store: ArtifactStore,
  path: string,
  opts: {
    workerId: string;
    log?: (m: string) => void;
    retryMs?: number;
    /** The metadata file's content as the caller just read or wrote it (recordSpecSync). */
    metadata?: Record<string, unknown> | null;
  },
): Promise<{ record: ArtifactRecord } | { failure: string }> {
  const name = basename(path);
  const metaPath = metadataPathFor(path);
  const metadata = opts.metadata !== undefined ? opts.metadata : readMetadata(metaPath);
  let lastError = "";
  for (let attempt = 1; attempt <= TRIES; attempt++) {
    try {
      const stored = await put(store, path);
      if (metadata !== null && !inPlace(store, path)) await store.put(basename(metaPath), metaPath);
      return {
        record: {
          name,
          size: stored.size,
          sha256: stored.sha256,
          stored_in: store.describe(),
          location: stored.location,
          worker_id: opts.workerId,
          metadata,
        },
      };
    } catch (e) {
      lastError = e instanceof Error ? e.message : String(e);
      opts.log?.(`storing ${name} in ${store.describe()} failed (try ${attempt}): ${lastError}`);
      if (attempt < TRIES) {
        await new Promise((r) => setTimeout(r, (opts.retryMs ?? 500) * 2 ** (attempt - 1)));
      }
    }
  }
  return {
    failure: `the model could not be stored in ${store.describe()} after ${TRIES} tries: ` +
      lastError,
  };
}

/** A folder store on the job's own models folder already holds the file. */
function inPlace(store: ArtifactStore, path: string): boolean {
  return store instanceof FolderStore && store.folder === resolve(dirname(path));
}

async function put(store: ArtifactStore, path: string) {
  if (!inPlace(store, path)) return await store.put(basename(path), path);
  return { ...await measureFile(path), location: resolve(path) };
}

/** The script's `.meta.json` (bounded in size), or null when there is none or it is not JSON. */
function readMetadata(metaPath: string): Record<string, unknown> | null {
  try {
    const text = readMetadataTextSync(metaPath);
    if (text === null) return null;
    const parsed = JSON.parse(text);
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? parsed : null;
  } catch {
    return null;
  }
}
