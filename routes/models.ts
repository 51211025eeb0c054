/** The model routes: list, download, delete. Thin: parse, call one use case, shape the answer. */
import { Hono } from "hono";
import type { Context } from "hono";
import { resolve } from "node:path";
import type { z } from "zod";
import { trainDocs } from "../contract/docs.ts";
import type { ModelsResponse } from "../contract/responses.ts";
import type { JobDeps } from "../jobs/service.ts";
import { listCatalog, type ModelStatus, notInStore } from "../models/catalog.ts";
import type { ModelRow } from "../projections/models.ts";
import { deleteModel, recordedModel } from "../models/model_service.ts";
import { NotFoundError } from "../errors.ts";
import { ArtifactRangeError } from "../artifacts/store.ts";
import { etagMatches, parseRange } from "./byte_range.ts";
import { check } from "./input.ts";
import { ModelsQuery } from "./schemas.ts";

/** Builds the `/train/models` routes. */
export function modelRoutes(deps: { jobs: JobDeps }): Hono {
  const app = new Hono();
  const catalog = { db: deps.jobs.store.database.db, artifacts: deps.jobs.artifacts };

  app.get("/models/available", trainDocs.models, async (c) => {
    const q = check(ModelsQuery, c.req.query(), "query");
    const checked = q.check === "true" || q.check === "1";
    const entries = await listCatalog(catalog, { type: q.type, limit: q.limit, check: checked });
    const counts: Record<ModelStatus, number> = { ok: 0, missing: 0, corrupt: 0, unrecorded: 0 };
    for (const e of entries) counts[e.status]++;
    return c.json(
      {
        available_models: Object.fromEntries(entries.map(({ name, time: _, ...e }) => [name, e])),
        models_directory: resolve(deps.jobs.modelsDir),
        artifact_store: deps.jobs.artifacts.describe(),
        checked,
        counts,
      } satisfies z.input<typeof ModelsResponse>,
    );
  });

  app.get("/models/:name/download", trainDocs.download, async (c) => {
    const name = c.req.param("name");
    const model = await recordedModel(deps.jobs, name);
    const etag = `"${model.sha256}"`;
    const common = {
      "ETag": etag,
      "Accept-Ranges": "bytes",
      "Cache-Control": "no-cache",
    };
    if (etagMatches(c.req.header("if-none-match"), etag)) {
      return new Response(null, { status: 304, headers: common });
    }
    const stat = await deps.jobs.artifacts.stat(name);
    if (!stat) throw missing(name, model, deps.jobs);
    const range = parseRange(c.req.header("range"), stat.size);
    if (range === "unsatisfiable") return unsatisfiable(c, name, stat.size, common);
    const headers: Record<string, string> = {
      ...common,
      "Content-Type": "application/octet-stream",
      "Content-Disposition": `attachment; filename="${name}"`,
      "Last-Modified": stat.modified.toUTCString(),
    };
    if (c.req.method === "HEAD") {
      const size = range ? range.end - range.start + 1 : stat.size;
      if (range) headers["Content-Range"] = `bytes ${range.start}-${range.end}/${stat.size}`;
      headers["Content-Length"] = String(size);
      return new Response(null, { status: range ? 206 : 200, headers });
    }
    let read;
    try {
      read = await deps.jobs.artifacts.get(name, range ?? undefined);
    } catch (e) {
      // The file shrank between the stat and the read.
      if (e instanceof ArtifactRangeError) return unsatisfiable(c, name, e.total, common);
      throw e;
    }
    if (!read) throw missing(name, model, deps.jobs);
    headers["Content-Length"] = String(read.size);
    if (range) headers["Content-Range"] = `bytes ${read.start}-${read.end}/${read.total}`;
    return new Response(read.body, { status: range ? 206 : 200, headers });
  });

  app.delete("/models/:name", trainDocs.deleteModel, async (c) => {
    const name = c.req.param("name");
    const d = await deleteModel(deps.jobs, name, "deleted by request");
    return c.json({
      status: "success",
      message: `model ${name} deleted` + (d.file_removed ? "" : "; its file was not in the store"),
      data: {
        name,
        job_id: d.model.job_id,
        deleted_at: d.deleted_at,
        file_removed: d.file_removed,
        warning: d.warning,
      },
    });
  });

  return app;
}

function missing(name: string, model: ModelRow, jobs: JobDeps): NotFoundError {
  if (model.stored_in !== jobs.artifacts.describe()) {
    return new NotFoundError(
      `model "${name}" is recorded, but ${notInStore(jobs.artifacts, model)}`,
    );
  }
  return new NotFoundError(
    `model "${name}" is recorded, but its file is not in ${jobs.artifacts.describe()}; ` +
      `GET /train/models/available?check=true (or deno task models:check) reports such models`,
  );
}

function unsatisfiable(c: Context, name: string, total: number, headers: Record<string, string>) {
  for (const [k, v] of Object.entries(headers)) c.header(k, v);
  c.header("Content-Range", `bytes */${total}`);
  return c.json({
    status: "error",
    message: `the Range starts past the end of ${name} (${total} bytes)`,
    details: [],
  }, 416);
}
