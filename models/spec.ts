/**
 * Training specs: what a model was trained from (type, effective hyperparameters, evaluation,
 * dataset identity), and its fingerprint. A model is reused only when the fingerprint recorded
 * in its metadata equals the one a submission asks for, so `retrain: false` never hands back a
 * model trained on other data or with other settings.
 */
import { createHash } from "node:crypto";
import { resolve } from "node:path";
import {
  lstatPresent,
  MAX_METADATA_BYTES,
  metadataPathFor,
  readMetadataTextSync,
} from "./artifacts.ts";

/** The dataset settings of the server (DATASET_PATH, DATASET_TARGET, DATASET_TASK). */
export interface DatasetSource {
  path?: string;
  target?: string;
  task?: string;
}

/** The data a model is trained on: a CSV file by path and content, or a bundled set by name. */
export type DatasetIdentity =
  | { path: string; sha256: string | null; target: string | null; task: string }
  | { builtin: string; task: string };

export interface TrainingSpec {
  spec_version: 1;
  model_type: string;
  /** After defaults: a request that spells a default out asks for the same model. */
  hyperparameters: Record<string, unknown>;
  use_cv: boolean;
  cv_folds: number | null;
  dataset: DatasetIdentity;
}

/**
 * The dataset settings found in an environment (`env` looks a variable up); empty values
 * count as unset. Three lookups: copying the whole environment, once per job, showed in the
 * supervisor thread's profile.
 */
export function datasetSource(env: (name: string) => string | undefined): DatasetSource {
  const get = (name: string) => env(name) || undefined;
  return { path: get("DATASET_PATH"), target: get("DATASET_TARGET"), task: get("DATASET_TASK") };
}

/**
 * The dataset's identity. The CSV's sha256 is cached by path, size and mtime: a submission
 * must not read a large file again when it has not changed. A file that cannot be read gets
 * sha256 null, which no trained model records, so nothing is reused for it.
 */
export async function datasetIdentity(source: DatasetSource): Promise<DatasetIdentity> {
  const task = source.task ?? "auto";
  // Mirrors models/_trainer_data.py: without a path, regression trains on diabetes.
  if (!source.path) return { builtin: task === "regression" ? "diabetes" : "breast_cancer", task };
  const path = resolve(source.path);
  return { path, sha256: await fileSha256(path), target: source.target ?? null, task };
}

const shaCache = new Map<string, { size: number; mtimeMs: number; sha256: string }>();

async function fileSha256(path: string): Promise<string | null> {
  try {
    const info = await Deno.stat(path);
    const mtimeMs = info.mtime?.getTime() ?? 0;
    const hit = shaCache.get(path);
    if (hit && hit.size === info.size && hit.mtimeMs === mtimeMs) return hit.sha256;
    const hash = createHash("sha256");
    using file = await Deno.open(path);
    for await (const chunk of file.readable) hash.update(chunk);
    const sha256 = hash.digest("hex");
    shaCache.set(path, { size: info.size, mtimeMs, sha256 });
    return sha256;
  } catch {
    return null;
  }
}

/** The spec of one model type's job. */
export function trainingSpec(
  job: { model_type: string; hyperparameters: Record<string, unknown>; use_cv: boolean },
  dataset: DatasetIdentity,
): TrainingSpec {
  const folds = job.hyperparameters.cv_folds;
  return {
    spec_version: 1,
    model_type: job.model_type,
    hyperparameters: job.hyperparameters,
    use_cv: job.use_cv,
    cv_folds: job.use_cv && typeof folds === "number" ? folds : null,
    dataset,
  };
}

/**
 * The spec of a job about to start, with the dataset as its script will see it: the server's
 * own DATASET_* variables are the ones passed through to the script.
 */
export async function launchSpec(
  job: { model_type: string; hyperparameters: Record<string, unknown>; use_cv: boolean },
): Promise<TrainingSpec> {
  return trainingSpec(job, await datasetIdentity(datasetSource((name) => Deno.env.get(name))));
}

/** sha256 of the spec's canonical JSON. */
export function specFingerprint(spec: TrainingSpec): string {
  return sha256Hex(canonicalJson(spec));
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** JSON with object keys sorted and undefined members left out: equal values, equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** What a script is told about its spec (TRAIN_SPEC, TRAIN_SPEC_FINGERPRINT). */
export function specEnv(spec: TrainingSpec): Record<string, string> {
  return { TRAIN_SPEC: canonicalJson(spec), TRAIN_SPEC_FINGERPRINT: specFingerprint(spec) };
}

/**
 * Records the spec in a finished model's metadata when the script did not: a registry script
 * that knows nothing of specs still gets reusable models. A script that wrote
 * `spec_fingerprint` (even null, when its data did not match) is left as it is.
 */
export function recordSpec(modelPath: string, spec: TrainingSpec): Promise<boolean> {
  try {
    return Promise.resolve(recordSpecSync(modelPath, spec).recorded);
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * recordSpec with synchronous calls (it runs at every job's end on the supervisor's thread,
 * where each async call waited for a thread-pool slot: about 8 calls, 17-80 ms per job under
 * load, measured). Also returns the metadata as it now stands, parsed, or null when there is
 * none or it is not a JSON object, so that the caller need not read the file again.
 */
export function recordSpecSync(
  modelPath: string,
  spec: TrainingSpec,
): { recorded: boolean; metadata: Record<string, unknown> | null } {
  const metaPath = metadataPathFor(modelPath);
  let metadata: Record<string, unknown> = {};
  try {
    const text = readMetadataTextSync(metaPath);
    if (text === null) {
      // Absent: written fresh below. Anything else that is not a small regular file (a
      // symlink out of MODELS_DIR, a huge file) is left alone and the model is not reusable.
      if (lstatPresent(metaPath)) return { recorded: false, metadata: null };
    } else {
      const parsed = JSON.parse(text);
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
        return { recorded: false, metadata: null };
      }
      metadata = parsed;
    }
  } catch {
    return { recorded: false, metadata: null };
  }
  if ("spec_fingerprint" in metadata) return { recorded: false, metadata };
  const written = { ...metadata, spec_fingerprint: specFingerprint(spec), spec };
  const tmp = `${metaPath}.tmp-${Deno.pid}`;
  // createNew (O_EXCL): a name the script planted, such as a symlink out of MODELS_DIR, is
  // never written through; rename then replaces whatever stands at metaPath, never follows it.
  const text = JSON.stringify(written, null, 2);
  Deno.writeTextFileSync(tmp, text + "\n", { createNew: true });
  Deno.renameSync(tmp, metaPath);
  // As a reader of the file will parse it (no undefined members).
  return { recorded: true, metadata: JSON.parse(text) };
}

const fingerprints = new Map<string, { mtimeMs: number; size: number; fp: string | null }>();

/**
 * The spec fingerprint recorded beside a model, or null. Parsed metadata is cached by its
 * mtime and size, so a submission that checks many older models reads each file once; the
 * stat is synchronous because a thousand async stats cost several times more (measured).
 */
export async function recordedFingerprint(modelPath: string): Promise<string | null> {
  const metaPath = metadataPathFor(modelPath);
  try {
    const info = Deno.lstatSync(metaPath);
    if (!info.isFile || info.size > MAX_METADATA_BYTES) return null;
    const mtimeMs = info.mtime?.getTime() ?? 0;
    const hit = fingerprints.get(metaPath);
    if (hit && hit.mtimeMs === mtimeMs && hit.size === info.size) return hit.fp;
    const parsed = JSON.parse(await Deno.readTextFile(metaPath));
    const fp = typeof parsed?.spec_fingerprint === "string" ? parsed.spec_fingerprint : null;
    fingerprints.set(metaPath, { mtimeMs, size: info.size, fp });
    return fp;
  } catch {
    return null;
  }
}
