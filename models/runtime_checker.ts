/** Holds the latest runtime check per model type; a missing runtime is checked again on use. */
import type { Registry } from "./registry.ts";
import { checkRuntimes, type Runtime } from "./runtime.ts";

export class RuntimeChecker {
  #current: Map<string, Runtime> | null = null;
  #pending: Promise<Map<string, Runtime>> | null = null;

  constructor(readonly registry: Registry, readonly trainPython?: string) {}

  /** Runs a check (one at a time) and keeps its result. */
  refresh(): Promise<Map<string, Runtime>> {
    this.#pending ??= checkRuntimes(this.registry, this.trainPython).then((r) => {
      this.#current = r;
      return r;
    }).finally(() => this.#pending = null);
    return this.#pending;
  }

  /** The last result, or null while the first check runs. */
  snapshot(): ReadonlyMap<string, Runtime> | null {
    return this.#current;
  }

  /** The runtime of a type; checked again if it was missing, so an install needs no restart. */
  async get(type: string): Promise<Runtime> {
    let current = this.#current ?? await this.refresh();
    if (!current.get(type)?.runnable) current = await this.refresh();
    return current.get(type) ??
      { runnable: false, program: null, missing: [], hint: `model type ${type} is not registered` };
  }
}
