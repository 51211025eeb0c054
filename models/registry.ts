/**
 * The model registry: which model types exist, how to run each, and which hyperparameters
 * each accepts. Built-in types run the Python scripts beside this file; `MODEL_REGISTRY`
 * names a JSON file that adds or overrides types.
 */
import { z } from "zod";
import { dirname, isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  AnyParams,
  knownKeys,
  NeuralNetParams,
  type ParamsSchema,
  RandomForestParams,
  XGBoostParams,
} from "./hyperparameters.ts";
import { NotFoundError, ValidationError } from "../errors.ts";

/** Stands for the resolved training Python in a command (see models/python.ts). */
export const PYTHON = "{python}";

export interface ModelType {
  name: string;
  /** Program and arguments; no shell ever sees them. */
  command: string[];
  params: ParamsSchema;
  /** Variables of the server's environment passed through to the script. */
  env: string[];
  /** Extension of the model file the script writes. */
  extension: string;
  /** Python modules the script imports, when it runs on the training Python. */
  requires: string[];
  builtin: boolean;
}

export type Registry = ReadonlyMap<string, ModelType>;

export const MODEL_TYPE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const NAME_RULE = "model type names are 1-64 lowercase letters, digits, . _ - " +
  "(starting with a letter or digit)";
/** "all" trains every type; "jobs" is the path of GET /train/jobs, not a type to POST to. */
const RESERVED = ["all", "jobs"];
const HERE = dirname(fileURLToPath(import.meta.url));
const DATASET_ENV = ["DATASET_PATH", "DATASET_TARGET", "DATASET_TASK"];
/**
 * A bare `python3` would be looked up on PATH, which may find another interpreter than the
 * one the runtime check reports (a pyenv shim without the packages): it means the training
 * Python, so it runs the interpreter that `GET /health` names.
 */
const BARE_PYTHONS = ["python3", "python"];

function builtin(name: string, script: string, params: ParamsSchema, mods: string[]): ModelType {
  return {
    name,
    command: [PYTHON, resolve(HERE, script)],
    params,
    env: DATASET_ENV,
    extension: ".joblib",
    requires: ["numpy", "sklearn", "joblib", ...mods],
    builtin: true,
  };
}

export const BUILTIN_TYPES: readonly ModelType[] = [
  builtin("neural-net", "train.py", NeuralNetParams, []),
  builtin("xgboost", "train_xgb.py", XGBoostParams, ["xgboost"]),
  builtin("random-forest", "train_rf.py", RandomForestParams, []),
];

const RegistryFile = z.record(
  z.string().regex(MODEL_TYPE_NAME, NAME_RULE),
  z.strictObject({
    command: z.array(z.string().min(1)).min(1),
    env: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/)).default([]),
    extension: z.string().regex(/^\.[A-Za-z0-9._-]{1,16}$/).default(".joblib"),
  }),
);

/** Builds the registry: built-ins, then the entries of `registryPath` over them. */
export async function loadRegistry(registryPath?: string): Promise<Registry> {
  const types = new Map(BUILTIN_TYPES.map((t) => [t.name, t]));
  if (!registryPath) return types;
  let text: string;
  try {
    text = await Deno.readTextFile(registryPath);
  } catch (e) {
    throw new Error(`MODEL_REGISTRY=${registryPath}: cannot read the file (${errorText(e)})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`MODEL_REGISTRY=${registryPath}: not valid JSON (${errorText(e)})`);
  }
  const parsed = RegistryFile.safeParse(raw);
  if (!parsed.success) {
    // zod reports a bad record key as "Invalid key in record": say what a name must be.
    const issues = parsed.error.issues.map((i) =>
      i.code === "invalid_key"
        ? `model type "${i.path.join(".")}": ${NAME_RULE}`
        : `${i.path.join(".")}: ${i.message}`
    );
    throw new Error(`MODEL_REGISTRY=${registryPath}: ${issues.join("; ")}`);
  }
  const base = dirname(resolve(registryPath));
  for (const [name, entry] of Object.entries(parsed.data)) {
    if (RESERVED.includes(name)) {
      throw new Error(
        `MODEL_REGISTRY=${registryPath}: "${name}" is reserved (${RESERVED.join(", ")})`,
      );
    }
    types.set(name, {
      name,
      command: entry.command.map((part, i) =>
        i === 0 && BARE_PYTHONS.includes(part) ? PYTHON : resolveRelative(part, base)
      ),
      params: AnyParams,
      env: entry.env,
      extension: entry.extension,
      requires: [],
      builtin: false,
    });
  }
  return types;
}

/** A part that names a relative path (./x, ../x, or a file that exists there) is made absolute. */
function resolveRelative(part: string, base: string): string {
  if (part === PYTHON || isAbsolute(part)) return part;
  if (part.startsWith("./") || part.startsWith("../")) return resolve(base, part);
  if (!part.includes("/")) return part;
  try {
    Deno.statSync(resolve(base, part));
    return resolve(base, part);
  } catch {
    return part;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Looks a type up; unknown types are refused with the list of known ones. */
export function requireType(registry: Registry, name: string, status: 404 | 422): ModelType {
  const type = registry.get(name);
  if (type) return type;
  const known = [...registry.keys(), "all"].join(", ");
  const message = `unknown model type "${name}"; known types: ${known}`;
  if (status === 422) throw new ValidationError(message, [{ field: "model_type", known }]);
  throw new NotFoundError(message, [{ known }]);
}

/**
 * Validates hyperparameters for the target types and returns each type's share, with the
 * type's defaults applied. With several types, a key must suit at least one of them and
 * each type gets the keys it knows.
 */
export function splitHyperparameters(
  types: readonly ModelType[],
  given: Record<string, unknown>,
): Map<string, Record<string, unknown>> {
  const problems: { field: string; message: string }[] = [];
  const shares = new Map<string, Record<string, unknown>>();
  const usedKeys = new Set<string>();
  for (const type of types) {
    const keys = knownKeys(type.params);
    const own = keys === null
      ? given
      : Object.fromEntries(Object.entries(given).filter(([k]) => keys.includes(k)));
    const parsed = type.params.safeParse(own);
    if (parsed.success) {
      shares.set(type.name, parsed.data);
      Object.keys(own).forEach((k) => usedKeys.add(k));
      continue;
    }
    for (const issue of parsed.error.issues) {
      const field = `hyperparameters.${issue.path.join(".")}`;
      problems.push({ field, message: `${type.name}: ${issue.message}` });
    }
  }
  const unknown = Object.keys(given).filter((k) => !usedKeys.has(k) && !anyKnows(types, k));
  for (const key of unknown) {
    problems.push({
      field: `hyperparameters.${key}`,
      // Naming the type: the key may well be another type's (`epochs` sent to xgboost).
      message: types.length === 1
        ? `not a hyperparameter of ${types[0].name}`
        : "not a hyperparameter of any model",
    });
  }
  if (problems.length) {
    const allowed = Object.fromEntries(types.map((t) => [t.name, knownKeys(t.params) ?? "any"]));
    throw new ValidationError(
      `invalid hyperparameters: ${problems.map((p) => `${p.field} (${p.message})`).join("; ")}`,
      [...problems, { allowed }],
    );
  }
  return shares;
}

function anyKnows(types: readonly ModelType[], key: string): boolean {
  return types.some((t) => {
    const keys = knownKeys(t.params);
    return keys === null || keys.includes(key);
  });
}
