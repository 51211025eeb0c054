/** Model files in the models directory: naming new ones, listing and finding existing ones. */
import { join, relative, resolve, sep } from "node:path";

const MODEL_FILE = /^(?<type>[a-z0-9][a-z0-9._-]*?)_model_(?<date>\d{4}-\d{2}-\d{2})/;
/** Files beside models that are not models: metadata and unfinished writes. */
const NOT_A_MODEL = /(\.meta\.json|\.tmp(-\d+)?)$/;

export interface ModelFile {
  name: string;
  path: string;
  type: string;
  size: number;
  modified: string;
  job_id: string | null;
  metadata: Record<string, unknown> | null;
}

/**
 * A new, unique model file path: `{type}_model_{YYYY-MM-DD}_{HHMMSS}_{job id prefix}{ext}`.
 * The job id prefix makes it unique per job; the name never collides with an older file.
 */
export function artifactPathFor(
  modelsDir: string,
  type: string,
  jobId: string,
  extension: string,
  now: Date,
): string {
  const iso = now.toISOString();
  const stamp = `${iso.slice(0, 10)}_${iso.slice(11, 19).replaceAll(":", "")}`;
  return join(resolve(modelsDir), `${type}_model_${stamp}_${jobId.slice(0, 8)}${extension}`);
}

/** The metadata file a training script writes beside a model. */
export function metadataPathFor(modelPath: string): string {
  return modelPath.replace(/\.[^./]+$/, "") + ".meta.json";
}

/** True when `path` lies inside `dir` (after resolving `..`). */
export function isInside(dir: string, path: string): boolean {
  const rel = relative(resolve(dir), resolve(dir, path));
  return rel !== "" && !rel.startsWith("..") && !rel.startsWith(sep) && !rel.includes(`..${sep}`);
}

/** Lists the model files in `modelsDir`, newest first; metadata is read when present. */
export async function listModels(modelsDir: string): Promise<ModelFile[]> {
  return (await scanModels(modelsDir, true)).map((m) => m.file);
}

/**
 * Model files with their absolute path and exact mtime, newest first. Metadata is read only
 * for listing: a submission reads only the metadata of the candidates it checks.
 */
export async function scanModels(modelsDir: string, withMetadata: boolean) {
  const dir = resolve(modelsDir);
  const files: { file: ModelFile; full: string; mtimeMs: number }[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const match = MODEL_FILE.exec(entry.name);
      if (!entry.isFile || !match || NOT_A_MODEL.test(entry.name)) continue;
      const full = join(dir, entry.name);
      const info = await Deno.stat(full).catch(() => null);
      if (!info) continue;
      const metadata = withMetadata ? await readMetadata(full) : null;
      const mtime = info.mtime ?? new Date(0);
      files.push({
        full,
        mtimeMs: mtime.getTime(),
        file: {
          name: entry.name,
          path: displayPath(full),
          type: match.groups!.type,
          size: info.size,
          modified: mtime.toISOString().slice(0, 19),
          job_id: typeof metadata?.job_id === "string" ? metadata.job_id : null,
          metadata,
        },
      });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  // By the exact mtime: `modified` shows whole seconds, and two jobs often finish in one.
  return files.sort((a, b) => b.mtimeMs - a.mtimeMs || b.file.name.localeCompare(a.file.name));
}

async function readMetadata(modelPath: string): Promise<Record<string, unknown> | null> {
  try {
    const parsed = JSON.parse(await Deno.readTextFile(metadataPathFor(modelPath)));
    return parsed && typeof parsed === "object" ? parsed : null;
  } catch {
    return null;
  }
}

/** Paths are shown relative to the working directory when inside it, as the contract does. */
function displayPath(full: string): string {
  const rel = relative(Deno.cwd(), full);
  return rel.startsWith("..") ? full : rel;
}

/** Removes a job's model file, metadata and unfinished writes (after a cancel or failure). */
export async function removeArtifacts(artifactPath: string): Promise<string[]> {
  const dir = resolve(artifactPath, "..");
  const base = artifactPath.slice(dir.length + 1).replace(/\.[^.]+$/, "");
  const removed: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.name.startsWith(base)) continue;
      await Deno.remove(join(dir, entry.name)).then(() => removed.push(entry.name), () => {});
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return removed;
}
