/** Model files in the models directory: naming new ones, listing and finding existing ones. */
import { existsSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { UnavailableError } from "../errors.ts";

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
    // Not a server bug: the folder vanished, became a file or unreadable after start.
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new UnavailableError(
        `MODELS_DIR ${dir} cannot be read (${(e as Error).message}); ask the operator to ` +
          `make it a readable folder again`,
      );
    }
  }
  // By the exact mtime: `modified` shows whole seconds, and two jobs often finish in one.
  return files.sort((a, b) => b.mtimeMs - a.mtimeMs || b.file.name.localeCompare(a.file.name));
}

/** The model type a file name starts with (`{type}_model_{date}…`), or null. */
export function modelTypeOf(name: string): string | null {
  return MODEL_FILE.exec(name)?.groups?.type ?? null;
}

/** True for files kept beside models that are not models: metadata, unfinished writes. */
export function isSidecar(name: string): boolean {
  return NOT_A_MODEL.test(name);
}

/** The metadata beside a model file, or null when absent, unreadable or not an object. */
export async function readMetadata(modelPath: string): Promise<Record<string, unknown> | null> {
  try {
    const text = await readMetadataText(metadataPathFor(modelPath));
    const parsed = text === null ? null : JSON.parse(text);
    return parsed && typeof parsed === "object" ? parsed : null;
  } catch {
    return null;
  }
}

/** Metadata beside a model is small; a larger file is not read. */
export const MAX_METADATA_BYTES = 1024 * 1024;

/**
 * A metadata file's text, or null when it is absent, not a regular file (a symlink a script
 * planted is never followed out of MODELS_DIR) or larger than MAX_METADATA_BYTES.
 */
export async function readMetadataText(path: string): Promise<string | null> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch {
    return null;
  }
  if (!info.isFile || info.size > MAX_METADATA_BYTES) return null;
  return await Deno.readTextFile(path);
}

/**
 * readMetadataText with synchronous calls, for the supervisor's thread: there each async call
 * waits for a thread-pool slot, milliseconds under load, for a file that takes microseconds.
 */
export function readMetadataTextSync(path: string): string | null {
  const info = lstatPresent(path);
  if (!info || !info.isFile || info.size > MAX_METADATA_BYTES) return null;
  return Deno.readTextFileSync(path);
}

/** Paths are shown relative to the working directory when inside it, as the contract does. */
export function displayPath(full: string): string {
  const rel = relative(Deno.cwd(), full);
  return rel.startsWith("..") ? full : rel;
}

/**
 * The exact names a job may have written for `artifact`: the model, its metadata and the
 * temp file of each (`<name>.tmp`, see models/_trainer_common.py; `<name>.tmp-<pid>` from
 * scripts that name temp files after their pid, when `pid` is known).
 */
export function jobFileNames(artifact: string, pid?: number): string[] {
  const names = [artifact, metadataPathFor(artifact)];
  const temps = (name: string) => [`${name}.tmp`, ...(pid ? [`${name}.tmp-${pid}`] : [])];
  return [...new Set(names.flatMap((name) => [name, ...temps(name)]))];
}

/**
 * File times come from the kernel's coarse clock, up to a tick (1-10 ms) behind Date.now():
 * a file written just after the job's start may look a little older than the start.
 */
const MTIME_SLACK_MS = 50;

export interface RemoveOptions {
  /** The pid of the job's process, for temp files named after it. */
  pid?: number;
  /**
   * Only files modified at or after this time (ms) are removed: a path a script merely
   * reported (another job's finished model, say) is not a file this job wrote.
   */
  writtenSince?: number;
  log?: (message: string) => void;
}

/**
 * Removes a job's files after a cancel or failure: exactly the names of `jobFileNames`, never
 * by prefix. A name is removed only when its folder resolves (realpath) inside MODELS_DIR, so
 * a symlinked folder never leads outside; a symlink itself is unlinked, never followed.
 * Returns the removed paths; each removal is logged.
 */
export function removeArtifacts(
  modelsDir: string,
  artifact: string,
  opts: RemoveOptions = {},
): Promise<string[]> {
  // Sync calls, as in acceptArtifact: this runs at the end of every job that did not complete,
  // on the supervisor's thread, and its 13 async calls (a realpath and an lstat per name) each
  // waited for a thread-pool slot; with `true` as the job, the cleanup path cost about 0.2 ms of
  // pool threads' CPU a job on top of the calls themselves (bench cpu, BENCH_CPU_JOB=true).
  // Still a promise that rejects, never a throw: callers attach their handling with .catch().
  try {
    return Promise.resolve(removeNow(modelsDir, artifact, opts));
  } catch (e) {
    return Promise.reject(e);
  }
}

function removeNow(modelsDir: string, artifact: string, opts: RemoveOptions): string[] {
  const root = realPathOrNull(modelsDir);
  if (!root) return [];
  const removed: string[] = [];
  // Every name lies in one folder: resolved once, not once per name.
  const folders = new Map<string, string | null>();
  for (const name of jobFileNames(resolve(modelsDir, artifact), opts.pid)) {
    const target = placeInside(root, name, folders);
    if (!target) continue;
    const info = lstatPresent(target);
    if (!info || info.isDirectory) continue;
    const mtime = info.mtime?.getTime() ?? 0;
    if (opts.writtenSince !== undefined && mtime + MTIME_SLACK_MS < opts.writtenSince) continue;
    try {
      Deno.removeSync(target);
      removed.push(target);
      opts.log?.(`removed ${target}`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) opts.log?.(`could not remove ${target}: ${e}`);
    }
  }
  return removed;
}

/**
 * Checks the model file a job produced: a regular file (not a symlink) whose real path lies
 * inside MODELS_DIR. Returns the path, null when there is no such file, or why it is refused.
 */
export function acceptArtifact(
  modelsDir: string,
  path: string,
): Promise<{ path: string } | { refused: string } | null> {
  // Sync calls: this runs once per job end on the supervisor's own thread, where each async
  // call waited for a thread-pool slot (50-90 ms per job measured under load, against
  // microseconds for the call itself).
  const info = lstatPresent(path);
  if (!info) return Promise.resolve(null);
  if (info.isSymlink) {
    return Promise.resolve({
      refused: `the model file ${path} is a symlink; a model must be a regular file`,
    });
  }
  if (!info.isFile) {
    return Promise.resolve({ refused: `the model path ${path} is not a regular file` });
  }
  const root = realPathOrNull(modelsDir);
  const real = realPathOrNull(path);
  if (!root || !real || !isInside(root, real)) {
    return Promise.resolve({
      refused: `the model file ${path} resolves outside MODELS_DIR (${real ?? "?"})`,
    });
  }
  return Promise.resolve({ path });
}

/**
 * lstat of a name that is usually absent, on the hot path of every job's end: a throwing
 * lstat costs about 23 µs (the error object, measured) against 2.5 µs for existsSync, and a
 * failed job probes six names. existsSync follows symlinks, so a symlink that points nowhere
 * reads as absent: it is neither followed nor read, only left in place.
 */
export function lstatPresent(path: string): Deno.FileInfo | null {
  if (!existsSync(path)) return null;
  try {
    return Deno.lstatSync(path);
  } catch {
    return null;
  }
}

function realPathOrNull(path: string): string | null {
  try {
    return Deno.realPathSync(path);
  } catch {
    return null;
  }
}

/**
 * `path` with its folder resolved, when that folder lies in or under `root` (already real);
 * else null. The last component is kept as is, so a symlink there is never followed.
 * `folders` keeps the folders resolved during one call.
 */
function placeInside(
  root: string,
  path: string,
  folders: Map<string, string | null>,
): string | null {
  const dir = dirname(path);
  if (!folders.has(dir)) folders.set(dir, realPathOrNull(dir));
  const folder = folders.get(dir);
  if (!folder) return null;
  const target = join(folder, basename(path));
  return isInside(root, target) ? target : null;
}
