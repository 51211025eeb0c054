/**
 * The remote worker's configuration: parsed once from the environment with zod into a frozen
 * object, like the server's config.ts. The settings a worker shares with the server (where
 * models go, which Python trains, which dataset) are parsed by the server's own loadConfig,
 * so they mean and check exactly the same on both.
 */
import { z } from "zod";
import { type Config, ConfigError, loadConfig, shownSetting } from "../config.ts";
import { checkSettings } from "../startup_checks.ts";

export { ConfigError } from "../config.ts";

/** Variables the worker reads with the server's rules and defaults. */
const SHARED = [
  "MODELS_DIR",
  "MODEL_REGISTRY",
  "MAX_CONCURRENT_JOBS",
  "CANCEL_GRACE_SECONDS",
  "JOB_NICE",
  "TRAIN_PYTHON",
  "DATASET_PATH",
  "DATASET_TARGET",
  "DATASET_TASK",
] as const;
type Shared = Pick<Config, typeof SHARED[number]>;

const WorkerSchema = z.object({
  TRAINER_URL: z.url({
    protocol: /^https?$/,
    message: "must be the trainer API's http:// or https:// URL, like http://trainer.lan:8000",
  }).transform((url) => url.replace(/\/+$/, "")),
  WORKER_TOKEN: z.string().min(1),
  // The contract's limit on a worker name.
  WORKER_NAME: z.string().min(1).max(200).optional(),
});

export type WorkerConfig = Readonly<
  z.infer<typeof WorkerSchema> & Shared & { WORKER_NAME: string }
>;

/** What to set when a required variable is missing: the one message that names it. */
const MISSING: Record<string, string> = {
  TRAINER_URL: "TRAINER_URL is not set: set it to the trainer API's URL, like " +
    "TRAINER_URL=http://trainer.lan:8000 (the server runs with WORKERS=remote)",
  WORKER_TOKEN: "WORKER_TOKEN is not set: set it to the same secret as the server's " +
    "WORKER_TOKEN",
};

/**
 * Parses the worker's configuration from an environment map; throws ConfigError naming each
 * missing or bad variable. `hostname` names the worker when WORKER_NAME is not set.
 */
export function loadWorkerConfig(
  env: Record<string, string | undefined>,
  hostname: () => string = Deno.hostname,
): WorkerConfig {
  const present = Object.fromEntries(
    Object.keys(WorkerSchema.shape).map((k) => [k, env[k] === "" ? undefined : env[k]]),
  );
  const problems: string[] = [];
  const parsed = WorkerSchema.safeParse(present);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0]);
      problems.push(
        present[name] === undefined && MISSING[name]
          ? MISSING[name]
          : `${shownSetting(name, present[name])}: ${issue.message}`,
      );
    }
  }
  let shared: Shared | null = null;
  try {
    shared = pickShared(loadConfig(Object.fromEntries(SHARED.map((k) => [k, env[k]]))));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // loadConfig's own heading is dropped so that both lists read as one.
    problems.push(...e.message.replace(/^invalid configuration:\n/, "").split("\n"));
  }
  if (!parsed.success || !shared || problems.length) {
    throw new ConfigError(
      `invalid configuration:\n  ${problems.map((p) => p.trim()).join("\n  ")}`,
    );
  }
  return Object.freeze({
    ...parsed.data,
    ...shared,
    WORKER_NAME: parsed.data.WORKER_NAME ?? hostname(),
  });
}

/**
 * The server's start-up checks of the shared settings (MODELS_DIR writable, DATASET_PATH a
 * readable CSV with DATASET_TARGET among its columns): they read nothing else, so the
 * server's defaults fill the rest of its Config.
 */
export async function checkWorkerSettings(config: WorkerConfig): Promise<void> {
  await checkSettings(Object.freeze({ ...loadConfig({}), ...pickShared(config) }));
}

function pickShared(config: Shared): Shared {
  return Object.fromEntries(SHARED.map((k) => [k, config[k]])) as unknown as Shared;
}
