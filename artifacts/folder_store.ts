/** The default artifact store: files in one local folder (MODELS_DIR). */
import { join, resolve } from "node:path";
import { measure } from "./checksum.ts";
import {
  type ArtifactEntry,
  type ArtifactRead,
  type ArtifactSource,
  type ArtifactStat,
  type ArtifactStore,
  type ByteRange,
  checkExpected,
  checkName,
  type Expected,
  isArtifactName,
  resolveRange,
  type Stored,
} from "./store.ts";

const CHUNK = 1 << 20;

/**
 * Artifacts as files in `folder`. A put writes `.{name}.{uuid}.partial` in the same folder and
 * renames it into place only after the bytes check out: rename within one file system is
 * atomic, so readers see the old file or the whole new one. Names never start with ".", so
 * temp files can neither collide with an artifact nor be listed as one.
 */
export class FolderStore implements ArtifactStore {
  readonly folder: string;

  constructor(folder: string) {
    this.folder = resolve(folder);
  }

  describe(): string {
    return `folder ${this.folder}`;
  }

  close(): void {}

  async put(name: string, source: ArtifactSource, expected: Expected = {}): Promise<Stored> {
    checkName(name);
    checkExpected(source, expected);
    await Deno.mkdir(this.folder, { recursive: true });
    const temp = join(this.folder, `.${name}.${crypto.randomUUID()}.partial`);
    const m = measure(expected);
    try {
      await writeNew(temp, source, m.stream);
      const location = join(this.folder, name);
      // The folder is not synced after the rename: a crash may lose the new name (the old
      // artifact stays), but can never expose a partial file.
      await Deno.rename(temp, location);
      return { ...m.result(), location };
    } catch (e) {
      await Deno.remove(temp).catch(() => {});
      throw e;
    }
  }

  async stat(name: string): Promise<ArtifactStat | null> {
    checkName(name);
    const info = await Deno.stat(join(this.folder, name)).catch(nullIfMissing);
    if (!info?.isFile) return null;
    return { size: info.size, modified: info.mtime ?? new Date(0) };
  }

  async get(name: string, range?: ByteRange): Promise<ArtifactRead | null> {
    checkName(name);
    // Stat the open handle, not the path: a put renaming a new file in between cannot make
    // the size disagree with the bytes.
    const file = await Deno.open(join(this.folder, name)).catch(nullIfMissing);
    if (!file) return null;
    try {
      const info = await file.stat();
      if (!info.isFile) {
        file.close();
        return null;
      }
      const { start, end } = resolveRange(range, info.size);
      if (start > 0) await file.seek(start, Deno.SeekMode.Start);
      const size = Math.max(0, end - start + 1);
      const modified = info.mtime ?? new Date(0);
      return { body: readExactly(file, size), size, total: info.size, start, end, modified };
    } catch (e) {
      file.close();
      throw e;
    }
  }

  async delete(name: string): Promise<boolean> {
    checkName(name);
    return await Deno.remove(join(this.folder, name)).then(() => true, (e) => {
      if (e instanceof Deno.errors.NotFound) return false;
      throw e;
    });
  }

  async *list(): AsyncIterable<ArtifactEntry> {
    const entries = Deno.readDir(this.folder);
    try {
      for await (const entry of entries) {
        if (!entry.isFile || !isArtifactName(entry.name)) continue;
        const info = await Deno.stat(join(this.folder, entry.name)).catch(nullIfMissing);
        if (info) yield { name: entry.name, size: info.size, modified: info.mtime ?? new Date(0) };
      }
    } catch (e) {
      // A store that was never written to is empty, not broken.
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}

/** Writes `source` to a new file and syncs it, so the rename never publishes unflushed bytes. */
async function writeNew(
  path: string,
  source: ArtifactSource,
  through: TransformStream<Uint8Array, Uint8Array>,
): Promise<void> {
  using file = await Deno.open(path, { write: true, createNew: true });
  // Opened after the temp file: a source opened first would leak if that failed. From here
  // on, an early exit from the loop cancels the pipe, which closes a source file.
  const input = typeof source === "string" ? (await Deno.open(source)).readable : source;
  for await (const chunk of input.pipeThrough(through)) {
    for (let done = 0; done < chunk.byteLength;) done += await file.write(chunk.subarray(done));
  }
  await file.syncData();
}

/** A stream of the next `length` bytes of `file`; it closes the file when done or cancelled. */
function readExactly(file: Deno.FsFile, length: number): ReadableStream<Uint8Array> {
  let left = length;
  let open = true;
  const close = () => {
    if (open) file.close();
    open = false;
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const buffer = new Uint8Array(Math.min(CHUNK, left));
        const n = left === 0 ? 0 : await file.read(buffer);
        if (n === null) throw new Error(`file ended ${left} bytes early (truncated?)`);
        left -= n;
        if (n > 0) controller.enqueue(buffer.subarray(0, n));
        if (left === 0) {
          close();
          controller.close();
        }
      } catch (e) {
        close();
        controller.error(e);
      }
    },
    cancel: close,
  });
}

function nullIfMissing(e: unknown): null {
  if (e instanceof Deno.errors.NotFound) return null;
  throw e;
}
