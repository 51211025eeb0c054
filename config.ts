/**
 * Configuration: parsed once from the environment with zod into a frozen object. Every
 * default lives here; README.md documents each variable.
 */
import { z } from "zod";

const flag = z.enum(["0", "1", "true", "false", ""]).transform((v) => v === "1" || v === "true");
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const KiB = 1024;
const MiB = 1024 * KiB;
const HOST_NAME = String.raw`(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(:\d+)?`;
const HOST_LIST = new RegExp(`^${HOST_NAME}(,${HOST_NAME})*$`);

const ConfigSchema = z.object({
  PORT: int(0, 65535).default(8000),
  HOST: z.string().min(1).default("127.0.0.1"),
  DATABASE_URL: z.string().regex(/^(file:|libsql:|https?:|wss?:)/, {
    message: "must start with file:, libsql:, http(s): or ws(s):",
  }).default("file:data/trainer.db"),
  DATABASE_AUTH_TOKEN: z.string().optional(),
  MODELS_DIR: z.string().min(1).default("data/models"),
  MODEL_REGISTRY: z.string().min(1).optional(),
  MAX_CONCURRENT_JOBS: int(1, 256).default(2),
  CANCEL_GRACE_SECONDS: z.coerce.number().min(0).max(600).default(5),
  JOB_NICE: int(0, 19).default(10),
  JOB_TIMEOUT_SECONDS: int(1, 7 * 24 * 3600).default(3600),
  API_TOKEN: z.string().min(1).optional(),
  METRICS_TOKEN: z.string().min(1).optional(),
  ALLOW_INSECURE: flag.default(false),
  TRAIN_PYTHON: z.string().min(1).optional(),
  LOG_TAIL_LINES: int(0, 100_000).default(200),
  // Passed through to the built-in scripts (models/_trainer_data.py): checked here so that a
  // typo stops the server instead of failing every job. startup_checks.ts checks the file.
  DATASET_PATH: z.string().min(1).optional(),
  DATASET_TARGET: z.string().min(1).optional(),
  DATASET_TASK: z.enum(["auto", "classification", "regression"], {
    message: "must be auto, classification or regression",
  }).optional(),
  LOG_TAIL_BYTES: int(1024, 16 * MiB).default(64 * KiB),
  LOG_PAGE_BYTES: int(64 * KiB, 64 * MiB).default(4 * MiB),
  LOG_FILES: flag.default(true),
  BODY_TIMEOUT_SECONDS: z.coerce.number().gt(0).max(3600).default(10),
  MAX_STREAMS: int(1, 100_000).default(256),
  STATUS_CACHE_MB: int(0, 1024).default(8),
  SSE_PING_SECONDS: z.coerce.number().min(0.05).max(3600).default(15),
  CORS_ORIGINS: z.string().regex(/^(\*|https?:\/\/[^,\s]+(,https?:\/\/[^,\s]+)*)$/, {
    message: "must be * or a comma-separated list of origins like https://app.example.com",
  }).optional(),
  // Checked by artifacts/config.ts (with AWS_* and S3_FORCE_PATH_STYLE): named here so that
  // the configuration lists every variable the server reads.
  ARTIFACT_STORE: z.string().optional(),
  S3_ENDPOINT: z.string().optional(),
  WORKERS: z.enum(["local", "remote"], { message: "must be local or remote" }).default("local"),
  WORKER_TOKEN: z.string().min(16, { message: "must be at least 16 characters" }).optional(),
  LEASE_SECONDS: z.coerce.number().min(1).max(3600).default(30),
  ALLOWED_HOSTS: z.string().regex(HOST_LIST, {
    message: "must be a comma-separated list of host names, like trainer.internal,my-pc.lan",
  }).transform((v) => v.split(",").map(hostPart)).optional(),
});

export type Config = Readonly<z.infer<typeof ConfigSchema>>;

/** Thrown when the environment holds a bad value; the message names the variable. */
export class ConfigError extends Error {}

/**
 * A setting as an error message shows it: `NAME="value"`, but a secret only by its length,
 * so that a typo in a token does not print the token into logs.
 */
export function shownSetting(name: string, value: unknown): string {
  if (/TOKEN|SECRET|PASSWORD/.test(name) && typeof value === "string") {
    return `${name} (${value.length} characters, not shown)`;
  }
  return `${name}=${JSON.stringify(typeof value === "string" ? redactUrl(value) : value)}`;
}

const URL_SECRETS = ["authToken", "auth_token", "token", "access_token", "password"];

/**
 * A URL as logs and errors show it: a password in it (`https://user:pw@host`) and a token in
 * its query (`libsql://host?authToken=…`) become `***`. Anything else is shown as given.
 */
export function redactUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return value;
  }
  let changed = false;
  if (url.password) {
    url.password = "***";
    changed = true;
  }
  for (const key of URL_SECRETS) {
    if (url.searchParams.has(key)) {
      url.searchParams.set(key, "***");
      changed = true;
    }
  }
  return changed ? url.href : value;
}

/** Parses configuration from an environment map; throws ConfigError naming each bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(
    Object.keys(ConfigSchema.shape).map((k) => [k, env[k] === "" ? undefined : env[k]]),
  );
  const parsed = ConfigSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) =>
      `${shownSetting(i.path.join("."), present[String(i.path[0])])}: ${i.message}`
    );
    throw new ConfigError(`invalid configuration:\n  ${lines.join("\n  ")}`);
  }
  const config = parsed.data;
  if (!isLoopback(config.HOST) && !config.API_TOKEN && !config.ALLOW_INSECURE) {
    throw new ConfigError(
      `HOST=${config.HOST} is not a loopback address: set API_TOKEN to require a bearer ` +
        `token, or ALLOW_INSECURE=1 to serve without one`,
    );
  }
  if (config.WORKERS === "remote" && !config.WORKER_TOKEN) {
    throw new ConfigError(
      `WORKERS=remote needs WORKER_TOKEN: the token remote workers send (at least 16 ` +
        `characters, e.g. from \`openssl rand -hex 32\`); set the same value on each worker`,
    );
  }
  if (config.WORKER_TOKEN && config.WORKER_TOKEN === config.API_TOKEN) {
    throw new ConfigError(
      `WORKER_TOKEN equals API_TOKEN: give them different values, so that a worker's token ` +
        `cannot use the API and a user's token cannot act as a worker`,
    );
  }
  if (config.DATASET_TARGET && !config.DATASET_PATH) {
    throw new ConfigError(
      `DATASET_TARGET=${config.DATASET_TARGET} names a column of DATASET_PATH, which is not ` +
        `set: set DATASET_PATH to your CSV file, or unset DATASET_TARGET (the built-in ` +
        `datasets have their own target)`,
    );
  }
  return Object.freeze(config);
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  // A whole IPv4 address in 127.0.0.0/8: a name such as 127.0.0.1.nip.io resolves anywhere.
  const v4 = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  if (v4) return v4.slice(1).every((part) => Number(part) <= 255);
  return h === "localhost" || h === "::1" || h === "[::1]";
}

/**
 * The host part of a Host header or host name, as isLoopback and ALLOWED_HOSTS compare it:
 * lower case, without the port or a final dot; an IPv6 address keeps its brackets.
 */
export function hostPart(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1) || h;
  const name = h.split(":")[0];
  return name.endsWith(".") ? name.slice(0, -1) : name;
}
