/**
 * Start-up checks of settings that parse but cannot work: a MODELS_DIR that cannot be
 * created or written, a DATASET_PATH that is not a readable CSV file, a DATASET_TARGET that is
 * not one of its columns. Run once before the server listens; each failure is a ConfigError
 * naming the variable, so the server stops at once instead of failing every job later.
 */
import { join, resolve } from "node:path";
import { type Config, ConfigError } from "./config.ts";

/** Throws a ConfigError for the first setting that cannot work. */
export async function checkSettings(config: Config): Promise<void> {
  // A hosted API whose models live in a bucket never writes a model file: it needs no folder.
  const noFolder = config.WORKERS === "remote" && !!config.ARTIFACT_STORE?.startsWith("s3://");
  if (!noFolder) await checkModelsDir(config.MODELS_DIR);
  if (config.DATASET_PATH) await checkDataset(config.DATASET_PATH, config.DATASET_TARGET);
}

async function checkModelsDir(dir: string): Promise<void> {
  const probe = join(resolve(dir), `.trainer-write-check-${Deno.pid}`);
  try {
    await Deno.mkdir(dir, { recursive: true });
    // createNew (O_EXCL): a symlink planted at the probe's name is never written through.
    await Deno.remove(probe).catch(() => {});
    await Deno.writeTextFile(probe, "", { createNew: true });
    await Deno.remove(probe);
  } catch (e) {
    throw new ConfigError(
      `MODELS_DIR=${dir} cannot be created or written (${message(e)}); point it at a ` +
        `folder this server may write to`,
    );
  }
}

/** The header is all a start-up check can see without reading a whole (large) file. */
async function checkDataset(path: string, target: string | undefined): Promise<void> {
  const where = `DATASET_PATH=${path}${path === resolve(path) ? "" : ` (${resolve(path)})`}`;
  let header: string[] | null;
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) throw new ConfigError(`${where} is not a file; it must name a CSV file`);
    header = await readHeader(path);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    if (e instanceof Deno.errors.NotFound) {
      throw new ConfigError(`${where} does not exist; it must name a CSV file with a header row`);
    }
    if (e instanceof TypeError) throw new ConfigError(`${where} is not UTF-8 text`);
    throw new ConfigError(`${where} cannot be read (${message(e)})`);
  }
  if (!header) throw new ConfigError(`${where} is empty; the first row must name the columns`);
  if (target !== undefined && !header.includes(target)) {
    throw new ConfigError(
      `DATASET_TARGET=${target} is not a column of ${where}; its columns are: ` +
        header.join(", "),
    );
  }
}

const CHUNK = 64 * 1024;
const MAX_HEADER = 4 * 1024 * 1024;

/** The first non-blank CSV row of a file, cells trimmed (as the scripts read it); null if none. */
async function readHeader(path: string): Promise<string[] | null> {
  using file = await Deno.open(path);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const buffer = new Uint8Array(CHUNK);
  let text = "";
  for (;;) {
    const n = await file.read(buffer);
    const final = n === null || text.length >= MAX_HEADER;
    text += final ? decoder.decode() : decoder.decode(buffer.subarray(0, n!), { stream: true });
    const row = firstRow(text.replace(/^\uFEFF/, ""), final);
    if (row !== undefined) return row;
  }
}

/**
 * The first non-blank row of CSV `text` (Python's csv dialect: comma, `"` quotes a field
 * and `""` is a quote inside one); undefined when more text is needed, null when none.
 */
export function firstRow(text: string, final: boolean): string[] | null | undefined {
  let i = 0;
  while (i < text.length) {
    const cells: string[] = [];
    let cell = "";
    let quoted = false;
    let ended = false;
    for (; i < text.length && !ended; i++) {
      const c = text[i];
      if (quoted) {
        if (c !== '"') cell += c;
        else if (text[i + 1] === '"') cell += text[++i];
        else if (i + 1 === text.length && !final) return undefined;
        else quoted = false;
      } else if (c === '"' && cell === "") quoted = true;
      else if (c === ",") {
        cells.push(cell);
        cell = "";
      } else if (c === "\n" || c === "\r") ended = true;
      else cell += c;
    }
    if (!ended && !final) return undefined;
    cells.push(cell);
    const trimmed = cells.map((c) => c.trim());
    if (trimmed.some((c) => c !== "")) return trimmed;
  }
  return final ? null : undefined;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
