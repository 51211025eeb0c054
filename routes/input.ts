/** Request parsing: JSON bodies, zod checks, path parameters. Bad input becomes a typed error. */
import type { Context } from "hono";
import { z } from "zod";
import { AppError, BadRequestError, NotFoundError, ValidationError } from "../errors.ts";
import { JobEvent } from "../jobs/events.ts";

export const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A job id from the path; anything that is not a UUID cannot name a job. */
export function jobIdParam(c: Context): string {
  const id = c.req.param("job_id") ?? "";
  if (!JOB_ID.test(id)) {
    throw new NotFoundError(`no job with id "${id.slice(0, 100)}" (job ids are UUIDs)`);
  }
  return id.toLowerCase();
}

/** The JSON body, or undefined when there is none and `required` is false. */
export async function readJson(c: Context, required: boolean): Promise<unknown> {
  const reading = c.req.text();
  // Past the deadline the read is abandoned; it settles when the client stops sending.
  reading.catch(() => {});
  const deadline = c.get("bodyDeadline");
  const text = deadline ? await Promise.race([reading, deadline]) : await reading;
  if (text.trim() === "") {
    if (required) throw new BadRequestError("request body is empty; send a JSON object");
    return undefined;
  }
  const type = c.req.header("content-type") ?? "";
  if (type && !/^application\/(.+\+)?json\b/i.test(type)) {
    throw new AppError(
      415,
      `Content-Type must be application/json, not "${type.slice(0, 100)}" ` +
        `(with curl: -H "Content-Type: application/json")`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BadRequestError(`malformed JSON: ${(e as Error).message}`);
  }
}

/**
 * A submission reads its options from the JSON body only: `POST /train/xgboost?retrain=true`
 * would otherwise train with the defaults while the user believes retrain was asked for.
 */
export function refuseQuery(c: Context): void {
  // The accept path: most submissions have no query at all, and need no URL parsed.
  if (!c.req.url.includes("?")) return;
  const keys = [...new Set(new URL(c.req.url).searchParams.keys())];
  if (keys.length === 0) return;
  const shown = keys.slice(0, 5).map((k) => k.slice(0, 40)).join(", ");
  throw new ValidationError(
    `query parameters are not read here (got ${shown}): send the options in the JSON body, ` +
      `e.g. {"retrain": true}`,
    keys.slice(0, 20).map((k) => ({ field: `query.${k.slice(0, 40)}`, message: "not read" })),
  );
}

/**
 * What an object schema at `path` in `schema` takes, for an unknown key's message; nothing
 * when the path leads through anything but plain object schemas (an array, an optional...).
 */
function knownKeys(schema: z.ZodType, path: readonly PropertyKey[]): string {
  type Node = { shape?: Record<PropertyKey, unknown> } | undefined;
  let at = schema as unknown as Node;
  for (const key of path) at = at?.shape?.[key] as Node;
  const shape = at?.shape;
  return shape ? ` (known: ${Object.keys(shape).join(", ")})` : "";
}

/** Parses `value` with `schema` or throws 422 listing each problem. */
export function check<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const details = parsed.error.issues.map((i) => ({
    field: i.path.join(".") || what,
    message: i.code === "unrecognized_keys"
      ? `${i.message}${knownKeys(schema, i.path)}`
      : i.message,
  }));
  throw new ValidationError(
    `invalid ${what}: ${details.map((d) => `${d.field}: ${d.message}`).join("; ")}`,
    details,
  );
}

const EVENT_TYPES: readonly string[] = JobEvent.options.map((o) => o.shape.type.value);

/**
 * The event types a page or stream is filtered to: comma-separated lists, from `types` or
 * `type` (the stream's and the events page's names, each taken on both), or undefined for
 * all. An unknown type is a 422 naming the known ones, not a silently empty page. An empty
 * list means all on the events page (as it always did) and is a 422 on the stream (as it
 * always was): `emptyIsAll`.
 */
export function eventTypes(
  lists: (string | undefined)[],
  opts: { emptyIsAll: boolean },
): string[] | undefined {
  const given = lists.filter((l) => l !== undefined);
  if (given.length === 0) return undefined;
  const split = given.flatMap((l) => l.split(",")).map((t) => t.trim()).filter(Boolean);
  const types = [...new Set(split)];
  if (types.length === 0 && opts.emptyIsAll) return undefined;
  const unknown = types.filter((t) => !EVENT_TYPES.includes(t));
  if (types.length === 0 || unknown.length) {
    throw new ValidationError(
      `invalid query: types must be a comma-separated list of event types (${
        EVENT_TYPES.join(", ")
      })` +
        (unknown.length ? `; unknown: ${unknown.join(", ").slice(0, 200)}` : ""),
    );
  }
  return types;
}
