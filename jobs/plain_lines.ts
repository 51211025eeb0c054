/**
 * Plain output, found without a string per line. Most of what a job prints needs no look at
 * each line: no protocol message, no "\r" to drop, no line to cut. Such a block is queued as
 * runs of text with their line counts; the collector handles any other block line by line.
 */
import { PROTOCOL_PREFIX } from "./protocol.ts";

const PROTOCOL_LINE = `\n${PROTOCOL_PREFIX}`;

/** A block holding a "\r" or a protocol line: its lines are each looked at. */
function needsLook(block: string): boolean {
  return block.includes("\r") || block.startsWith(PROTOCOL_PREFIX) || block.includes(PROTOCOL_LINE);
}

/**
 * `block` (whole lines, without the last one's "\n") as runs of at most `maxRun` characters
 * cut at line ends, each with its number of lines; null when a line needs a look of its own:
 * a protocol line, a "\r", or a line longer than `maxLine`.
 */
export function plainRuns(
  block: string,
  maxLine: number,
  maxRun: number,
): [text: string, lines: number][] | null {
  if (needsLook(block)) return null;
  const runs: [string, number][] = [];
  let start = 0;
  let run = 0;
  let count = 0;
  for (;;) {
    const nl = block.indexOf("\n", start);
    const end = nl < 0 ? block.length : nl;
    if (end - start > maxLine) return null;
    // A run stays near its bound whatever one read returned, and so does a log event.
    if (end - run > maxRun && count > 0) {
      runs.push([block.slice(run, start - 1), count]);
      run = start;
      count = 0;
    }
    count++;
    if (nl < 0) break;
    start = nl + 1;
  }
  runs.push([run === 0 ? block : block.slice(run), count]);
  return runs;
}

/**
 * How many lines `block` (whole lines, without the last one's "\n") holds when none needs a
 * look of its own (as for plainRuns); null otherwise.
 */
export function plainCount(block: string, maxLine: number): number | null {
  // One run, never cut: the block itself, with its line count.
  return plainRuns(block, maxLine, Infinity)?.[0][1] ?? null;
}
