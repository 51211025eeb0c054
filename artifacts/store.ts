/**
 * The artifact store contract: named blobs (model files) kept in a folder or an S3 bucket.
 * Domain-blind on purpose: it knows names, bytes and checksums, never jobs or models.
 */

/** Bytes to store: a local file path, or a stream read once. */
export type ArtifactSource = string | ReadableStream<Uint8Array>;

/** What the caller knows about the bytes; a put that does not match is refused. */
export interface Expected {
  /** Byte count. */
  size?: number;
  /** Lowercase hex SHA-256 of the whole content. */
  sha256?: string;
}

/** The result of a put: what was stored, measured while streaming, and where. */
export interface Stored {
  size: number;
  sha256: string;
  /** An absolute file path or an `s3://bucket/key` URL. */
  location: string;
}

/** What a store knows about one artifact without reading it. */
export interface ArtifactStat {
  size: number;
  modified: Date;
  /** Set where the store keeps it (S3 object metadata); the folder store does not. */
  sha256?: string;
  etag?: string;
}

/** Bytes `start` to `end` inclusive, as in an HTTP `Range: bytes=start-end` header. */
export interface ByteRange {
  start: number;
  /** Inclusive; past the end or absent means "to the end". */
  end?: number;
}

/** An open read: the body must be consumed or cancelled, or it holds a file or a socket. */
export interface ArtifactRead {
  body: ReadableStream<Uint8Array>;
  /** Bytes in `body`. */
  size: number;
  /** Bytes in the whole artifact, for `Content-Range: bytes start-end/total`. */
  total: number;
  start: number;
  /** Inclusive; `start - 1` for an empty artifact. */
  end: number;
  modified: Date;
  sha256?: string;
}

/** One entry of `list()`. */
export interface ArtifactEntry {
  name: string;
  size: number;
  modified: Date;
}

/**
 * Where model files live. Every put is all-or-nothing: readers see the old artifact or the
 * complete new one, never a partial or unverified one.
 */
export interface ArtifactStore {
  /** For logs and errors: `folder /abs/path` or `s3://bucket/prefix`. */
  describe(): string;
  /**
   * Stores `source` under `name`, replacing any artifact of that name. A stream source must
   * come with its `sha256` (S3 stores it as metadata before the first byte is sent); a file
   * source is hashed first when it is missing. Throws ArtifactIntegrityError on a mismatch.
   */
  put(name: string, source: ArtifactSource, expected?: Expected): Promise<Stored>;
  /** Size and date of `name`, or null when there is none. */
  stat(name: string): Promise<ArtifactStat | null>;
  /** Opens `name` (or a byte range of it); null when there is none. */
  get(name: string, range?: ByteRange): Promise<ArtifactRead | null>;
  /** Removes `name`; false when there was none. */
  delete(name: string): Promise<boolean>;
  /** Every artifact, in no particular order; unfinished writes are never listed. */
  list(): AsyncIterable<ArtifactEntry>;
  /** Releases connections (S3's keep-alive sockets); the store is unusable afterwards. */
  close(): void;
}

/** A name is not a plain file name. */
export class ArtifactNameError extends Error {}

/** The bytes did not match the declared size or sha256; nothing was stored. */
export class ArtifactIntegrityError extends Error {}

/** A range starts past the end; `total` is for `Content-Range: bytes *\/total` (HTTP 416). */
export class ArtifactRangeError extends Error {
  constructor(message: string, readonly total: number) {
    super(message);
  }
}

/** The storage service failed; the message says what to check. */
export class ArtifactStoreError extends Error {}

// A leading letter, digit or "_" keeps names from being hidden files, options or "." and "..",
// and leaves names starting with "." free for the stores' temp files. 200 leaves room for a
// temp suffix within the usual 255-byte file name limit.
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** True when `name` is a plain file name a store accepts. */
export function isArtifactName(name: string): boolean {
  return NAME.test(name) && !name.includes("..");
}

/** Throws ArtifactNameError unless `name` is a plain file name. */
export function checkName(name: string): void {
  if (typeof name === "string" && isArtifactName(name)) return;
  throw new ArtifactNameError(
    `artifact name ${JSON.stringify(name)} is not allowed: use 1-200 letters, digits, "_", ` +
      `"-" or "." (not first), with no "/" and no ".."`,
  );
}

/** Throws unless the declared values are well formed; they are checked against the bytes later. */
export function checkExpected(source: ArtifactSource, expected: Expected): void {
  const { size, sha256 } = expected;
  if (size !== undefined && !(Number.isSafeInteger(size) && size >= 0)) {
    throw new ArtifactIntegrityError(`declared size ${size} is not a byte count`);
  }
  if (sha256 !== undefined && !SHA256.test(sha256)) {
    throw new ArtifactIntegrityError(`declared sha256 ${sha256} is not 64 lowercase hex digits`);
  }
  // Every store refuses this, not only S3, so code tried on a folder works on a bucket.
  if (typeof source !== "string" && sha256 === undefined) {
    throw new ArtifactIntegrityError(
      "a stream source needs its sha256: pass {sha256}, or pass a file path instead",
    );
  }
}

/** Checks a range against the artifact's size; returns inclusive bounds. */
export function resolveRange(
  range: ByteRange | undefined,
  total: number,
): { start: number; end: number } {
  if (!range) return { start: 0, end: total - 1 };
  const { start, end } = range;
  const wellFormed = Number.isSafeInteger(start) && start >= 0 &&
    (end === undefined || (Number.isSafeInteger(end) && end >= start));
  if (!wellFormed) throw new RangeError(`byte range ${start}-${end ?? ""} is not valid`);
  if (start >= total) {
    throw new ArtifactRangeError(`byte range starts at ${start}, past the end (${total})`, total);
  }
  return { start, end: Math.min(end ?? total, total - 1) };
}
