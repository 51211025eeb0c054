/** Request schemas of the Train API (the contract's TrainingRequest, plus additive fields). */
import { z } from "zod";
import { JobStatus } from "../jobs/events.ts";

/**
 * Names that JavaScript objects treat specially. Parsing into a record drops `__proto__`
 * silently, so a request naming one is refused before that can happen.
 */
const RESERVED_KEYS = ["__proto__", "constructor", "prototype"];

const Hyperparameters = z.unknown().superRefine((value, ctx) => {
  if (!value || typeof value !== "object" || Array.isArray(value)) return;
  for (const key of RESERVED_KEYS.filter((k) => Object.hasOwn(value, k))) {
    ctx.addIssue({
      code: "custom",
      path: [key],
      message: `"${key}" cannot be a hyperparameter name (it is reserved in JavaScript objects)`,
    });
  }
}).pipe(z.record(z.string(), z.unknown()).nullable());

const options = {
  retrain: z.boolean().default(false),
  use_cv: z.boolean().default(true),
  hyperparameters: Hyperparameters.default(null),
  timeout_seconds: z.number().int().min(1).max(7 * 24 * 3600).optional(),
  /** Hosted mode: runs the job may get when a worker is lost or stopped (1 = no second run). */
  max_attempts: z.number().int().min(1).max(10).optional(),
};

export const TrainingRequest = z.strictObject({
  model_type: z.string().min(1).max(64),
  ...options,
});

/** The optional body of `POST /train/{model_type}`. */
export const TrainingOptions = z.strictObject(options);

export const ListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(50),
  offset: z.coerce.number().int().min(0).max(10_000_000).default(0),
  status: JobStatus.optional(),
  model_type: z.string().max(64).optional(),
  parent_id: z.string().max(64).optional(),
});

/**
 * An event's seq, from a query string: "abc" would otherwise read "received NaN". Only the
 * type's message is replaced; -1 still says ">=0".
 */
export const Seq = z.coerce.number({
  error: (issue) =>
    issue.code === "invalid_type"
      ? "must be a number: an event's seq (0 for the start)"
      : undefined,
}).int().min(0);

export const PageQuery = z.strictObject({
  after: Seq.default(0),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  type: z.string().max(200).optional(),
});

export const EventsQuery = PageQuery.extend({
  /** The stream's name for `type`, taken here too. */
  types: z.string().max(500).optional(),
});

/** A stream's position: an event's seq (`after`, `Last-Event-ID`). */
export const Cursor = Seq.max(Number.MAX_SAFE_INTEGER);

export const JobStreamQuery = z.strictObject({
  after: Cursor.optional(),
  types: z.string().max(500).optional(),
  /** The events page's name for it, taken here too. */
  type: z.string().max(500).optional(),
});

export const AllStreamQuery = z.strictObject({ after: Cursor.optional() });

export const IdempotencyKey = z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, {
  message: "must be 1-200 printable ASCII characters without spaces",
});

export const ModelsQuery = z.strictObject({
  type: z.string().min(1).max(64).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).optional(),
  check: z.enum(["true", "false", "1", "0"]).optional(),
});
