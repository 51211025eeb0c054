/** Streamed uploads to S3: sha256 as metadata, retries, no multipart upload left behind. */
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { measure } from "./checksum.ts";
import { explain } from "./s3_errors.ts";
import { ArtifactIntegrityError, ArtifactStoreError } from "./store.ts";

const MiB = 1 << 20;

/** One object to upload, with its checksum known before the first byte is sent. */
export interface UploadTarget {
  client: S3Client;
  bucket: string;
  key: string;
  /** Goes into `x-amz-meta-sha256`, which S3 only accepts when the upload starts. */
  sha256: string;
  /** Declared size, checked against the bytes; also sizes the parts. */
  size?: number;
}

/** How hard to try. */
export interface RetryPolicy {
  /** Whole-upload attempts, for sources that can be read again (files). */
  tries: number;
  /** Waits between attempts; the last one repeats. */
  delaysMs: number[];
}

/**
 * Uploads what `open()` returns, verifies the object with HeadObject, and returns the measured
 * size. `open` is called once per try; `replayable` says whether a second call gives the
 * same bytes (a file) or not (a stream, which is then tried once; the SDK still retries each
 * part, since it keeps the part in memory).
 */
export async function uploadVerified(
  target: UploadTarget,
  source: { open: () => Promise<ReadableStream<Uint8Array>>; replayable: boolean },
  retry: RetryPolicy,
): Promise<number> {
  const where = `s3://${target.bucket}/${target.key}`;
  const leftovers: string[] = [];
  const tries = source.replayable ? Math.max(1, retry.tries) : 1;
  for (let attempt = 1;; attempt++) {
    try {
      const size = await uploadOnce(target, await source.open(), leftovers);
      await verify(target, where, size);
      return size;
    } catch (e) {
      if (attempt < tries && retriable(e)) {
        await sleep(retry.delaysMs[Math.min(attempt, retry.delaysMs.length) - 1] ?? 0);
        continue;
      }
      if (e instanceof ArtifactIntegrityError || e instanceof ArtifactStoreError) throw e;
      const times = attempt === 1 ? "" : ` after ${attempt} tries`;
      throw new ArtifactStoreError(
        `upload to ${where} failed${times}: ${messageOf(e)}.${explain(e, target.bucket)}` +
          leftovers.map((l) => ` ${l}`).join(""),
        { cause: e },
      );
    }
  }
}

async function uploadOnce(
  target: UploadTarget,
  body: ReadableStream<Uint8Array>,
  leftovers: string[],
): Promise<number> {
  const m = measure({ size: target.size, sha256: target.sha256 });
  const stop = new AbortController();
  const upload = new Upload({
    client: target.client,
    params: {
      Bucket: target.bucket,
      Key: target.key,
      Body: body.pipeThrough(m.stream, { signal: stop.signal }),
      Metadata: { sha256: target.sha256 },
      ContentType: "application/octet-stream",
    },
    partSize: partSizeFor(target.size),
    // We abort ourselves: the SDK's abort, when it fails, replaces the error that caused it.
    leavePartsOnError: true,
  });
  try {
    await upload.done();
    return m.result().size;
  } catch (e) {
    // The upload may have stopped reading midway; this releases the source (closes a file).
    stop.abort(e);
    if (upload.uploadId) await abortParts(target, upload.uploadId, leftovers);
    throw e;
  }
}

async function abortParts(target: UploadTarget, uploadId: string, leftovers: string[]) {
  try {
    await target.client.send(
      new AbortMultipartUploadCommand({
        Bucket: target.bucket,
        Key: target.key,
        UploadId: uploadId,
      }),
    );
  } catch (e) {
    leftovers.push(
      `The unfinished multipart upload ${uploadId} of ${target.key} could not be aborted ` +
        `(${messageOf(e)}); its parts cost storage until it is: add a lifecycle rule ` +
        `AbortIncompleteMultipartUpload to bucket ${target.bucket}, or abort it by hand.`,
    );
  }
}

/** The object must be exactly what was sent; a mismatch is removed rather than served. */
async function verify(target: UploadTarget, where: string, size: number) {
  const head = await target.client.send(
    new HeadObjectCommand({ Bucket: target.bucket, Key: target.key }),
  );
  const stored = head.Metadata?.sha256;
  if (head.ContentLength === size && stored === target.sha256) return;
  await target.client.send(new DeleteObjectCommand({ Bucket: target.bucket, Key: target.key }));
  throw new ArtifactStoreError(
    `upload to ${where} did not verify: the service holds ${head.ContentLength} bytes with ` +
      `sha256 metadata ${stored ?? "missing"}, we sent ${size} bytes with ${target.sha256}; ` +
      `the object was removed. Does the service keep x-amz-meta-* headers?`,
  );
}

// Part size bounds memory (the SDK holds 4 parts) and the object size (10,000 parts at most):
// 8 MiB parts take a stream of unknown size to 78 GiB for 32 MiB of buffers.
function partSizeFor(size: number | undefined): number {
  if (size === undefined) return 8 * MiB;
  return Math.max(8 * MiB, Math.ceil(size / 9_000 / MiB) * MiB);
}

/** Worth another try: not a mismatch or a source failure we raised, and not a 4xx refusal. */
function retriable(e: unknown): boolean {
  if (e instanceof ArtifactIntegrityError || e instanceof ArtifactStoreError) return false;
  const status = (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  return !(status && status >= 400 && status < 500 && status !== 408 && status !== 429);
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message || e.name : String(e);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
