/** Artifacts as objects in any S3-compatible service (AWS, MinIO, R2, Ceph, s3rver). */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  paginateListObjectsV2,
  type S3Client,
} from "@aws-sdk/client-s3";
import { sha256File } from "./checksum.ts";
import { explain } from "./s3_errors.ts";
import { type RetryPolicy, uploadVerified } from "./s3_upload.ts";
import {
  type ArtifactEntry,
  ArtifactRangeError,
  type ArtifactRead,
  type ArtifactSource,
  type ArtifactStat,
  type ArtifactStore,
  ArtifactStoreError,
  type ByteRange,
  checkExpected,
  checkName,
  type Expected,
  isArtifactName,
  resolveRange,
  type Stored,
} from "./store.ts";

/** Where and how to store. */
export interface S3StoreOptions {
  client: S3Client;
  bucket: string;
  /** Key prefix without leading or trailing "/"; "" for the bucket's root. */
  prefix?: string;
  /** Defaults to 3 tries, waiting 1 s then 4 s. */
  retry?: RetryPolicy;
}

/**
 * Artifacts as objects `{prefix}/{name}`, each with its sha256 in `x-amz-meta-sha256`. Uploads
 * are streamed (multipart above one part) and only complete once the bytes check out, so a
 * refused or failed put leaves no object; its parts are aborted.
 */
export class S3Store implements ArtifactStore {
  readonly #client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly #retry: RetryPolicy;

  constructor(options: S3StoreOptions) {
    this.#client = options.client;
    this.bucket = options.bucket;
    this.prefix = options.prefix ?? "";
    this.#retry = options.retry ?? { tries: 3, delaysMs: [1000, 4000] };
  }

  describe(): string {
    return `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ""}`;
  }

  close(): void {
    this.#client.destroy();
  }

  async put(name: string, source: ArtifactSource, expected: Expected = {}): Promise<Stored> {
    checkName(name);
    checkExpected(source, expected);
    const key = this.#key(name);
    // The metadata goes out with the first request, so a file's hash comes first: one more
    // local read, cheap next to the upload.
    const sha256 = expected.sha256 ?? await sha256File(source as string);
    // A file's size sizes the parts (a big model needs big parts: S3 takes 10,000 at most) and
    // is checked again while uploading, which catches a file still being written.
    const size = expected.size ??
      (typeof source === "string" ? (await Deno.stat(source)).size : undefined);
    const open = typeof source === "string"
      ? async () => (await Deno.open(source)).readable
      : () => Promise.resolve(source);
    const stored = await uploadVerified(
      { client: this.#client, bucket: this.bucket, key, sha256, size },
      { open, replayable: typeof source === "string" },
      this.#retry,
    );
    return { size: stored, sha256, location: `s3://${this.bucket}/${key}` };
  }

  async stat(name: string): Promise<ArtifactStat | null> {
    checkName(name);
    const head = await this.#send(
      "stat",
      name,
      () => this.#client.send(new HeadObjectCommand(this.#object(name))),
    );
    if (!head) return null;
    return {
      size: head.ContentLength ?? 0,
      modified: head.LastModified ?? new Date(0),
      sha256: head.Metadata?.sha256,
      etag: head.ETag,
    };
  }

  async get(name: string, range?: ByteRange): Promise<ArtifactRead | null> {
    checkName(name);
    if (range) resolveRange(range, Number.MAX_SAFE_INTEGER); // shape only; the service knows the size
    const header = range ? `bytes=${range.start}-${range.end ?? ""}` : undefined;
    const command = new GetObjectCommand({ ...this.#object(name), Range: header });
    let res;
    try {
      res = await this.#send("get", name, () => this.#client.send(command));
    } catch (e) {
      if (!(e instanceof ArtifactStoreError && isInvalidRange(e.cause))) throw e;
      const total = (await this.stat(name))?.size;
      if (total === undefined) return null;
      throw new ArtifactRangeError(`byte range starts at ${range?.start}, past the end`, total);
    }
    if (!res?.Body) return null;
    const body = res.Body.transformToWebStream() as ReadableStream<Uint8Array>;
    const size = res.ContentLength ?? 0;
    const bounds = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.ContentRange ?? "");
    const [start, end, total] = bounds ? bounds.slice(1).map(Number) : [0, size - 1, size];
    const modified = res.LastModified ?? new Date(0);
    return { body, size, total, start, end, modified, sha256: res.Metadata?.sha256 };
  }

  async delete(name: string): Promise<boolean> {
    // S3 answers a delete the same whether or not the object existed, hence the stat.
    const existed = (await this.stat(name)) !== null;
    if (existed) {
      await this.#send(
        "delete",
        name,
        () => this.#client.send(new DeleteObjectCommand(this.#object(name))),
      );
    }
    return existed;
  }

  async *list(): AsyncIterable<ArtifactEntry> {
    const Prefix = this.prefix ? `${this.prefix}/` : "";
    const pages = paginateListObjectsV2(
      { client: this.#client },
      // The delimiter keeps "sub/folders" out: artifact names never hold a "/".
      { Bucket: this.bucket, Prefix, Delimiter: "/" },
    );
    try {
      for await (const page of pages) {
        for (const o of page.Contents ?? []) {
          const name = o.Key?.slice(Prefix.length) ?? "";
          if (!isArtifactName(name)) continue;
          yield { name, size: o.Size ?? 0, modified: o.LastModified ?? new Date(0) };
        }
      }
    } catch (e) {
      throw this.#failure("list", this.describe(), e);
    }
  }

  #key(name: string): string {
    return this.prefix ? `${this.prefix}/${name}` : name;
  }

  #object(name: string) {
    return { Bucket: this.bucket, Key: this.#key(name) };
  }

  /** Sends `command`; null when the object does not exist, ArtifactStoreError on failure. */
  async #send<T>(op: string, name: string, call: () => Promise<T>): Promise<T | null> {
    try {
      return await call();
    } catch (e) {
      const err = e as { name?: string };
      if (err.name === "NoSuchKey" || err.name === "NotFound") return null;
      throw this.#failure(op, `s3://${this.bucket}/${this.#key(name)}`, e);
    }
  }

  #failure(op: string, where: string, e: unknown): ArtifactStoreError {
    const message = e instanceof Error ? e.message || e.name : String(e);
    return new ArtifactStoreError(
      `${op} ${where} failed: ${message}.${explain(e, this.bucket)}`,
      { cause: e },
    );
  }
}

function isInvalidRange(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  return err?.name === "InvalidRange" || err?.$metadata?.httpStatusCode === 416;
}
