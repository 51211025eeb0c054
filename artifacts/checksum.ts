/** Streaming SHA-256: of a file, and of bytes on their way to a store. */
import { createHash } from "node:crypto";
import { ArtifactIntegrityError, type Expected } from "./store.ts";

/** Hex SHA-256 of a file, read in chunks so a model of any size costs no memory. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  // Reading through the handle (not `file.readable`) keeps closing in `using`'s hands.
  const buffer = new Uint8Array(1 << 20);
  for (let n = await file.read(buffer); n !== null; n = await file.read(buffer)) {
    hash.update(buffer.subarray(0, n));
  }
  return hash.digest("hex");
}

/** Files up to this size are read and hashed in one synchronous call. */
const SMALL_FILE_BYTES = 1 << 20;

/**
 * Size and hex SHA-256 of a file from one open handle. A file of at most 1 MiB (the model of
 * a quick job) is read with synchronous calls: on the supervisor's thread each async call
 * waits for a thread-pool slot, milliseconds under load, and a cached 1 MiB read takes well
 * under one. A larger file goes on in 1 MiB async reads, so it never holds the thread.
 */
export async function measureFile(path: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash("sha256");
  using file = Deno.openSync(path);
  // Sized to the file (a fresh 1 MiB buffer per job showed in profiles): one read, then EOF.
  const buffer = new Uint8Array(Math.min(file.statSync().size + 1, SMALL_FILE_BYTES));
  let size = 0;
  for (let n = file.readSync(buffer); n !== null;) {
    hash.update(buffer.subarray(0, n));
    size += n;
    n = size < SMALL_FILE_BYTES ? file.readSync(buffer) : await file.read(buffer);
  }
  return { size, sha256: hash.digest("hex") };
}

/** A pass-through that hashes and counts; `result()` is valid once the stream has ended. */
export interface Measure {
  stream: TransformStream<Uint8Array, Uint8Array>;
  result(): { size: number; sha256: string };
}

/**
 * Measures bytes as they pass, and fails the stream instead of ending it when they do not match
 * `expected`. Failing rather than ending matters: a store finishes a write only when its
 * input ends, so a mismatch never becomes a visible artifact.
 */
export function measure(expected: Expected = {}): Measure {
  const hash = createHash("sha256");
  let size = 0;
  let sha256: string | undefined;
  const stream = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      size += chunk.byteLength;
      // Stop early: no point sending gigabytes that will be refused.
      if (expected.size !== undefined && size > expected.size) {
        throw new ArtifactIntegrityError(`got more than the declared ${expected.size} bytes`);
      }
      hash.update(chunk);
      controller.enqueue(chunk);
    },
    flush() {
      sha256 = hash.digest("hex");
      if (expected.size !== undefined && size !== expected.size) {
        throw new ArtifactIntegrityError(`got ${size} bytes, ${expected.size} were declared`);
      }
      if (expected.sha256 !== undefined && sha256 !== expected.sha256) {
        throw new ArtifactIntegrityError(
          `sha256 of the bytes is ${sha256}, ${expected.sha256} was declared`,
        );
      }
    },
  });
  return {
    stream,
    result() {
      if (sha256 === undefined) throw new Error("measure: the stream has not ended");
      return { size, sha256 };
    },
  };
}
