/**
 * OpenAPI descriptions of the routes, as `describeRoute` middleware that the route modules
 * put in front of their handlers. Every schema here is a reference to a zod schema that
 * the code uses (requests in routes/schemas.ts, responses in contract/responses.ts); the
 * document is generated from them, never written by hand.
 */
import { describeRoute, resolver } from "hono-openapi";
import type { MiddlewareHandler } from "hono";
import type { OpenAPIV3, OpenAPIV3_1 } from "openapi-types";
import { z } from "zod";
import {
  AllStreamQuery,
  EventsQuery,
  IdempotencyKey,
  JobStreamQuery,
  ListQuery,
  ModelsQuery,
  PageQuery,
  TrainingOptions,
  TrainingRequest,
} from "../routes/schemas.ts";
import { NeuralNetParams, RandomForestParams, XGBoostParams } from "../models/hyperparameters.ts";
import {
  CancelResponse,
  DeleteModelResponse,
  ErrorBody,
  EventsResponse,
  HealthResponse,
  JobList,
  LogsResponse,
  ModelsResponse,
  StatusResponse,
  SubmitEnvelope,
  SubmitResponse,
} from "./responses.ts";

type Responses = Record<string, OpenAPIV3_1.ResponseObject>;

/** Response schemas describe what is sent: defaults applied, unknown keys absent. */
const OUTPUT = { options: { io: "output" } };

function json(description: string, schema: z.ZodType) {
  return { description, content: { "application/json": { schema: resolver(schema, OUTPUT) } } };
}

const ERRORS = {
  400: "The body is empty, not JSON, or was cut off",
  401: "API_TOKEN is set and the bearer token is missing or wrong",
  403: "The request comes from a web page whose Origin is not in CORS_ORIGINS",
  404: "No such job, model type or file",
  409: "The job's state does not allow it (e.g. it already finished)",
  413: "The body is larger than 64 KiB",
  416: "The Range starts past the end of the file; Content-Range says its size (bytes */size)",
  415: "The body is not sent as application/json",
  421: "On a loopback bind, the Host header is not a loopback name nor in ALLOWED_HOSTS",
  422: "A field, query parameter or header is invalid; `details` lists each one",
  503: "The server is shutting down; retry shortly",
} as const;

/** The error envelope, once per status. */
export function errorResponses(...codes: (keyof typeof ERRORS)[]): Responses {
  return Object.fromEntries(
    [...new Set(codes)].sort().map((code) => [code, json(ERRORS[code], ErrorBody)]),
  ) as unknown as Responses;
}

/**
 * A route behind API_TOKEN answers 401 without it, any route 421 to a Host it does not serve,
 * and 503 while shutting down.
 */
const errors = (...codes: (keyof typeof ERRORS)[]) => errorResponses(...codes, 401, 421, 503);

/**
 * A request-side JSON Schema (defaults make fields optional), for parameters and components;
 * typed as 3.0's because openapi-types declares parameters so, though 3.1 takes JSON Schema.
 */
function paramSchema(field: z.ZodType): OpenAPIV3.SchemaObject {
  const { $schema: _, ...schema } = z.toJSONSchema(field, { io: "input" });
  return schema as OpenAPIV3.SchemaObject;
}

/** Query parameters from a zod object schema, one per field. */
function query(schema: z.ZodObject): OpenAPIV3_1.ParameterObject[] {
  return Object.entries(schema.shape).map(([name, field]) => ({
    name,
    in: "query",
    required: !(field as z.ZodType).safeParse(undefined).success,
    schema: paramSchema(field as z.ZodType),
  }));
}

const jobIdParam: OpenAPIV3_1.ParameterObject = {
  name: "job_id",
  in: "path",
  required: true,
  schema: { type: "string", format: "uuid" },
};

const modelName: OpenAPIV3_1.ParameterObject = {
  name: "name",
  in: "path",
  required: true,
  description: "The model's file name, as GET /train/models/available lists it",
  schema: { type: "string" },
};

const downloadHeaders: OpenAPIV3_1.ParameterObject[] = [
  {
    name: "Range",
    in: "header",
    required: false,
    description: "One range: bytes=start-end, bytes=start- or bytes=-suffix; others are ignored",
    schema: { type: "string" },
  },
  {
    name: "If-None-Match",
    in: "header",
    required: false,
    description: "The ETag of a copy the client has: 304 when it is this model's",
    schema: { type: "string" },
  },
];

const idempotencyHeader: OpenAPIV3_1.ParameterObject = {
  name: "Idempotency-Key",
  in: "header",
  required: false,
  description: "A retry with the same key and body returns the first job instead of a new one",
  schema: paramSchema(IdempotencyKey),
};

/**
 * The hyperparameters each built-in type takes, for `components.schemas`. The request schema
 * accepts any object there; the model type's own schema (these) checks it after.
 */
export const hyperparameterSchemas = {
  XGBoostHyperparameters: paramSchema(XGBoostParams),
  RandomForestHyperparameters: paramSchema(RandomForestParams),
  NeuralNetHyperparameters: paramSchema(NeuralNetParams),
};

const body = (schema: z.ZodType, required: boolean) => ({
  required,
  description: "`hyperparameters` of the built-in types: see XGBoostHyperparameters, " +
    "RandomForestHyperparameters and NeuralNetHyperparameters under components; for " +
    '"all", each type takes the keys it knows, and every key must suit one of them.',
  content: { "application/json": { schema: resolver(schema) } },
});

const TRAIN = ["train"];

/** Descriptions of the `/train` routes, keyed by handler. */
export const trainDocs = {
  submit: describeRoute({
    tags: TRAIN,
    summary: "Start training with a full configuration (one type or all)",
    parameters: [idempotencyHeader],
    requestBody: body(TrainingRequest, true),
    responses: {
      200: json("The job (for `all`, the parent and its children)", SubmitResponse),
      ...errors(400, 403, 409, 413, 415, 422),
    },
  }),
  submitType: describeRoute({
    tags: TRAIN,
    summary: "Start training for one model type (or all) with optional settings",
    parameters: [
      { name: "model_type", in: "path", required: true, schema: { type: "string" } },
      idempotencyHeader,
    ],
    requestBody: body(TrainingOptions, false),
    responses: {
      200: json("The job, in the contract's envelope", SubmitEnvelope),
      ...errors(400, 403, 404, 409, 413, 415, 422),
    },
  }),
  status: describeRoute({
    tags: TRAIN,
    summary: "A job's status, progress, metrics and log tail",
    parameters: [jobIdParam],
    responses: { 200: json("The job", StatusResponse), ...errors(404) },
  }),
  list: describeRoute({
    tags: TRAIN,
    summary: "Jobs, newest first, with optional filters",
    parameters: query(ListQuery),
    responses: { 200: json("A page of jobs", JobList), ...errors(422) },
  }),
  cancel: describeRoute({
    tags: TRAIN,
    summary: "Cancel a job; a running process is stopped (SIGTERM, then SIGKILL)",
    parameters: [jobIdParam],
    responses: {
      200: json("The cancelled job", CancelResponse),
      ...errors(403, 404, 409),
    },
  }),
  models: describeRoute({
    tags: TRAIN,
    summary: "Models recorded in the log and files in the artifact store, newest first",
    description: "check=true also compares each file's sha256 with its record (reads every " +
      "file of a folder store) and reports corrupt files.",
    parameters: query(ModelsQuery),
    responses: { 200: json("The models", ModelsResponse), ...errors(422) },
  }),
  download: describeRoute({
    tags: TRAIN,
    summary: "Download a recorded model; ETag is its sha256; Range and If-None-Match work",
    parameters: [modelName, ...downloadHeaders],
    responses: {
      200: { description: "The whole file", content: { "application/octet-stream": {} } },
      206: {
        description: "The bytes of the Range; Content-Range says which",
        content: { "application/octet-stream": {} },
      },
      304: { description: "If-None-Match names the model's ETag: it has not changed" },
      ...errors(404, 416),
    },
  }),
  deleteModel: describeRoute({
    tags: TRAIN,
    summary: "Delete a model: records model_deleted in its job's log, then removes the file",
    parameters: [modelName],
    responses: {
      200: json("The deletion", DeleteModelResponse),
      ...errors(403, 404, 409),
    },
  }),
  logs: describeRoute({
    tags: TRAIN,
    summary: "A job's output, page by page",
    parameters: [jobIdParam, ...query(PageQuery).filter((p) => p.name !== "type")],
    responses: { 200: json("Log chunks after `after`", LogsResponse), ...errors(404, 422) },
  }),
  events: describeRoute({
    tags: TRAIN,
    summary: "A job's events from the log, page by page",
    parameters: [jobIdParam, ...query(EventsQuery)],
    responses: { 200: json("Events after `after`", EventsResponse), ...errors(404, 422) },
  }),
} satisfies Record<string, MiddlewareHandler>;

const STREAM = {
  description: "Server-sent events: `id` is the event's sequence number, `event` its type, " +
    "`data` the JSON of an entry of GET /train/job/{job_id}/events plus `job_id`. Resume " +
    "with `Last-Event-ID` or `?after=`. `: keep-alive` comments every SSE_PING_SECONDS. " +
    "503 with Retry-After past MAX_STREAMS.",
  content: { "text/event-stream": {} },
};

/** Descriptions of the event streams. */
export const streamDocs = {
  job: describeRoute({
    tags: TRAIN,
    summary: "A job's events as they happen, ending with `event: end` (data: the status view)",
    parameters: [jobIdParam, ...query(JobStreamQuery)],
    responses: { 200: STREAM, ...errors(400, 404, 422) },
  }),
  all: describeRoute({
    tags: TRAIN,
    summary: "Every job's submitted, started and terminal events as they happen",
    parameters: query(AllStreamQuery),
    responses: { 200: STREAM, ...errors(400, 422) },
  }),
} satisfies Record<string, MiddlewareHandler>;

export const healthDoc = describeRoute({
  tags: ["operations"],
  summary: "Liveness and readiness; open without a token",
  security: [],
  responses: {
    200: json(
      "The server can take jobs (only `status` without the token when API_TOKEN is set)",
      z.union([HealthResponse, HealthResponse.pick({ status: true }).strict()]),
    ),
    ...errorResponses(421),
    503: json(
      "The database does not answer, or the server is shutting down",
      z.union([HealthResponse, ErrorBody]),
    ),
  },
});

/**
 * A route open without a token that answers with a page, a script or a file (not JSON).
 * Every route needs a description: tests fail on a registered route that /openapi.json lacks.
 */
export function describeOpen(
  summary: string,
  types: string[],
  tag = "docs",
  ...codes: (keyof typeof ERRORS)[]
): MiddlewareHandler {
  return describeRoute({
    tags: [tag],
    summary,
    security: [],
    responses: {
      200: { description: summary, content: Object.fromEntries(types.map((t) => [t, {}])) },
      ...errorResponses(...codes, 421, 503),
    },
  });
}
