/**
 * Job use cases: submit and cancel. Checks that need I/O (registry, existing model files)
 * run here, before the unit of work; every decision on job state runs inside it.
 */
import type { ArtifactStore } from "../artifacts/store.ts";
import type { Clock, IdGenerator } from "../db/clock.ts";
import type { EventStore } from "../db/event_store.ts";
import { ConflictError } from "../errors.ts";
import { artifactPathFor } from "../models/artifacts.ts";
import {
  type ModelType,
  type Registry,
  requireType,
  splitHyperparameters,
} from "../models/registry.ts";
import {
  canonicalJson,
  datasetIdentity,
  type DatasetSource,
  sha256Hex,
  specFingerprint,
  trainingSpec,
} from "../models/spec.ts";
import { type Reusable, reusableModels } from "../models/reuse.ts";
import { isTerminal, type JobState } from "./state.ts";

export interface JobDeps {
  store: EventStore;
  registry: Registry;
  clock: Clock;
  newId: IdGenerator;
  modelsDir: string;
  defaultTimeoutSeconds: number;
  /** The dataset the scripts train on: part of the spec a reused model must match. */
  dataset: DatasetSource;
  /** Where models are kept (ARTIFACT_STORE): listed, downloaded, deleted and reused from. */
  artifacts: ArtifactStore;
}

export interface SubmitRequest {
  model_type: string;
  retrain: boolean;
  use_cv: boolean;
  hyperparameters: Record<string, unknown> | null;
  timeout_seconds?: number;
  max_attempts?: number;
}

export interface Submission {
  job: JobState;
  children: JobState[];
  /** True when an Idempotency-Key matched an earlier submission. */
  replayed: boolean;
}

/** Submits a job (a parent with one child per type for "all"); resolves once durable. */
export async function submitJob(
  deps: JobDeps,
  req: SubmitRequest,
  opts: { idempotencyKey?: string; typeStatus: 404 | 422 },
): Promise<Submission> {
  const all = req.model_type === "all";
  const types: ModelType[] = all
    ? [...deps.registry.values()]
    : [requireType(deps.registry, req.model_type, opts.typeStatus)];
  const shares = splitHyperparameters(types, req.hyperparameters ?? {});
  const timeout = req.timeout_seconds ?? deps.defaultTimeoutSeconds;
  const key = opts.idempotencyKey ?? null;
  const hash = key ? requestHash(req, shares, timeout) : null;
  const reuse = req.retrain
    ? new Map<string, Reusable | null>()
    : await findReusable(deps, types, shares, req.use_cv);
  const now = deps.clock.now();
  const parentId = deps.newId();
  const plan = types.map((t) => ({ type: t, id: all ? deps.newId() : parentId }));

  const submission = await deps.store.run(async (uow): Promise<Submission> => {
    if (key) {
      const earlier = await uow.findByIdempotencyKey(key);
      if (earlier && earlier.request_hash !== hash) {
        throw new ConflictError(
          `Idempotency-Key "${key}" was already used with a different request body`,
          [{ job_id: earlier.job_id }],
        );
      }
      if (earlier) {
        const children = await Promise.all((earlier.children ?? []).map((c) => uow.get(c)));
        return { job: earlier, children: children.filter((c) => !!c), replayed: true };
      }
    }
    const base = {
      retrain: req.retrain,
      use_cv: req.use_cv,
      timeout_seconds: timeout,
      idempotency_key: null,
      request_hash: null,
      ...(req.max_attempts && req.max_attempts > 1 ? { max_attempts: req.max_attempts } : {}),
    };
    if (all) {
      await uow.execute(parentId, {
        type: "submit",
        reuse: null,
        data: {
          ...base,
          model_type: "all",
          parent_id: null,
          children: plan.map((p) => p.id),
          hyperparameters: req.hyperparameters ?? {},
          artifact_path: null,
          idempotency_key: key,
          request_hash: hash,
        },
      });
    }
    const children: JobState[] = [];
    for (const { type, id } of plan) {
      await uow.execute(id, {
        type: "submit",
        reuse: reuse.get(type.name) ?? null,
        data: {
          ...base,
          model_type: type.name,
          parent_id: all ? parentId : null,
          children: null,
          hyperparameters: shares.get(type.name) ?? {},
          artifact_path: artifactPathFor(deps.modelsDir, type.name, id, type.extension, now),
          idempotency_key: all ? null : key,
          request_hash: all ? null : hash,
        },
      });
      children.push((await uow.get(id))!);
    }
    const job = all ? (await uow.get(parentId))! : children[0];
    return { job, children: all ? children : [], replayed: false };
  });
  // A parent's status is derived from its children at commit; read it back once durable.
  if (!all || submission.replayed) return submission;
  return { ...submission, job: (await deps.store.load(parentId)) ?? submission.job };
}

/** For each type, the newest finished model trained with the spec this submission asks for. */
async function findReusable(
  deps: JobDeps,
  types: readonly ModelType[],
  shares: ReadonlyMap<string, Record<string, unknown>>,
  useCv: boolean,
): Promise<Map<string, Reusable | null>> {
  const dataset = await datasetIdentity(deps.dataset);
  const wanted = new Map(types.map((t) => {
    const job = { model_type: t.name, hyperparameters: shares.get(t.name) ?? {}, use_cv: useCv };
    return [t.name, specFingerprint(trainingSpec(job, dataset))];
  }));
  // Only recorded models are candidates, and a record is written when its job completes:
  // the file of a job still running is never one.
  return await reusableModels({ db: deps.store.database.db, artifacts: deps.artifacts }, wanted);
}

/** Cancels a job and, for a parent, every child that has not finished. */
export async function cancelJob(deps: JobDeps, jobId: string, reason: string): Promise<JobState> {
  return await deps.store.run(async (uow) => {
    await uow.execute(jobId, { type: "cancel", reason });
    const job = (await uow.get(jobId))!;
    for (const childId of job.children ?? []) {
      const child = await uow.get(childId);
      if (child && !isTerminal(child.status)) {
        await uow.execute(childId, { type: "cancel", reason: "its parent job was cancelled" });
      }
    }
    return (await uow.get(jobId))!;
  });
}

/**
 * A stable digest of what a submission asks for, to match Idempotency-Key reuse. Taken after
 * defaults are applied: a retry that spells out a default asks for the same thing.
 */
function requestHash(
  req: SubmitRequest,
  shares: ReadonlyMap<string, Record<string, unknown>>,
  timeout: number,
): string {
  return sha256Hex(canonicalJson({
    model_type: req.model_type,
    retrain: req.retrain,
    use_cv: req.use_cv,
    hyperparameters: Object.fromEntries(shares),
    timeout,
    ...(req.max_attempts && req.max_attempts > 1 ? { max_attempts: req.max_attempts } : {}),
  }));
}
