/**
 * A real S3-compatible server for tests: s3rver (npm) on a free port and a temp directory.
 *
 * s3rver 3.7.1 implements multipart uploads but not AbortMultipartUpload (it answers 405) nor
 * ListMultipartUploads. The shim below adds the abort, doing what s3rver's own complete does
 * with an upload's parts (removing their folder), so tests can check that a failed put leaves
 * no parts: pending uploads are read from s3rver's directory. `abortSupported = false` turns
 * the shim off to test what a user is told when an abort fails.
 */
import { join } from "node:path";
import S3rver from "s3rver";

/** A running server and how to inspect it. */
export interface TestS3 {
  endpoint: string;
  bucket: string;
  /** Ids of multipart uploads started and neither completed nor aborted. */
  pendingUploads(): Promise<string[]>;
  abortSupported: boolean;
  close(): Promise<void>;
}

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | undefined>;
  status: number;
}
type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;

/** Starts s3rver with one empty bucket. Credentials: any key id and secret are accepted. */
export async function startS3rver(bucket = "models"): Promise<TestS3> {
  const directory = await Deno.makeTempDir({ prefix: "trainer_s3rver_" });
  const server = new S3rver({
    port: 0,
    address: "127.0.0.1",
    directory,
    silent: true,
    configureBuckets: [{ name: bucket }],
  });
  // s3rver's storage layout (lib/stores/filesystem.js): {dir}/{bucket}/._S3rver_uploads/{id}.
  const uploads = join(directory, bucket, "._S3rver_uploads");
  const s3: TestS3 = {
    endpoint: "",
    bucket,
    abortSupported: true,
    async pendingUploads() {
      const ids: string[] = [];
      try {
        for await (const e of Deno.readDir(uploads)) ids.push(e.name);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      return ids;
    },
    async close() {
      await new Promise<void>((resolve, reject) =>
        server.close((e: Error | undefined) => e ? reject(e) : resolve())
      );
      await Deno.remove(directory, { recursive: true });
    },
  };
  const abort: Middleware = async (ctx, next) => {
    const id = ctx.query.uploadId;
    if (!s3.abortSupported || ctx.method !== "DELETE" || !id) return await next();
    if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new Error(`odd upload id ${id}`);
    await Deno.remove(join(uploads, id), { recursive: true }).catch(() => {});
    ctx.status = 204;
  };
  // Koa composes `middleware` when the server starts listening, so this one goes first.
  (server as unknown as { middleware: Middleware[] }).middleware.unshift(abort);
  const address: { port: number } = await server.run();
  s3.endpoint = `http://127.0.0.1:${address.port}`;
  return s3;
}
