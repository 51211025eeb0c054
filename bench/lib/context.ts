/** What every benchmark gets from the runner. */
import type { BenchResult } from "./machine.ts";

export interface BenchContext {
  /** A scratch folder of this run; the runner removes it. */
  tmp: string;
  log(message: string): void;
  /** The 100,000-job / 2,000,000-event database, generated once per run; returns its path. */
  bigDatabase(): Promise<string>;
}

export type Bench = (ctx: BenchContext) => Promise<BenchResult>;
