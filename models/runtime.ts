/**
 * Finds the Python that runs the built-in scripts, deliberately rather than by luck of PATH:
 * TRAIN_PYTHON if set, else the project's .venv, else a system Python that has the packages.
 * Also tells, per model type, whether it can run and, if not, what to install.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type ModelType, PYTHON, type Registry } from "./registry.ts";

export interface Runtime {
  runnable: boolean;
  /** The program that runs the type's command. */
  program: string | null;
  missing: string[];
  /** What to do when not runnable. */
  hint: string | null;
}

const PROJECT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const APT = { sklearn: "python3-sklearn", xgboost: "python3-xgboost", joblib: "python3-joblib" };

/** Interpreters to try, in order. */
export function pythonCandidates(trainPython?: string): string[] {
  if (trainPython) return [trainPython];
  return [resolve(PROJECT, ".venv/bin/python"), "/usr/bin/python3", "python3"];
}

/** Which of `modules` the interpreter cannot import; null when it does not run at all. */
async function missingModules(python: string, modules: string[]): Promise<string[] | null> {
  const probe = modules.map((m) =>
    `try:\n import ${m}\nexcept Exception:\n print(${JSON.stringify(m)})`
  ).join("\n");
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", probe || "pass"],
      stdout: "piped",
      stderr: "null",
      stdin: "null",
    }).output();
    if (!out.success) return null;
    return new TextDecoder().decode(out.stdout).split("\n").filter(Boolean);
  } catch {
    return null;
  }
}

/**
 * Checks every type of the registry. Interpreters are probed only when a type runs {python},
 * in order, once each, and no further than the first that has every module those types need:
 * a type runs on the first candidate that has its modules, so later ones would not be used.
 * Each probe is a Python start (importing sklearn and xgboost took 1.4 s of CPU here, and the
 * pyenv shim on PATH 0.2 s more), and it ran while the first requests were being served.
 */
export async function checkRuntimes(
  registry: Registry,
  trainPython?: string,
  candidates: string[] = pythonCandidates(trainPython),
): Promise<Map<string, Runtime>> {
  const pythonTypes = [...registry.values()].filter((t) => t.command[0] === PYTHON);
  const modules = [...new Set(pythonTypes.flatMap((t) => t.requires))];
  const probes = new Map<string, string[] | null>();
  for (const py of pythonTypes.length ? candidates : []) {
    const missing = await missingModules(py, modules);
    probes.set(py, missing);
    if (missing?.length === 0) break;
  }
  const result = new Map<string, Runtime>();
  for (const type of registry.values()) {
    result.set(type.name, await checkType(type, probes, trainPython));
  }
  return result;
}

async function checkType(
  type: ModelType,
  probes: Map<string, string[] | null>,
  trainPython?: string,
): Promise<Runtime> {
  if (type.command[0] !== PYTHON) {
    const found = await findProgram(type.command[0]);
    return found ? { runnable: true, program: found, missing: [], hint: null } : {
      runnable: false,
      program: null,
      missing: [type.command[0]],
      hint: `program ${type.command[0]} not found or not executable`,
    };
  }
  for (const [py, missing] of probes) {
    if (missing && type.requires.every((m) => !missing.includes(m))) {
      return { runnable: true, program: py, missing: [], hint: null };
    }
  }
  // Name an interpreter that runs: the first candidate (.venv) usually does not exist.
  const runs = [...probes].find(([, m]) => m !== null);
  const missing = runs?.[1] ?? type.requires;
  const apt = missing.map((m) => APT[m as keyof typeof APT] ?? `python3-${m}`).join(" ");
  const install = `on Debian run 'apt-get install --no-install-recommends ${apt}', or create ` +
    `.venv and run '.venv/bin/pip install -r models/requirements.txt'`;
  const hint = !runs && trainPython
    ? `TRAIN_PYTHON=${trainPython} does not run`
    : !runs
    ? `no Python interpreter found (tried ${[...probes.keys()].join(", ")}): ${install}`
    : `Python packages missing (${missing.join(", ")}) for ${runs[0]}: ${install}`;
  return { runnable: false, program: null, missing, hint };
}

/** An executable found as given (absolute path) or on PATH. */
async function findProgram(program: string): Promise<string | null> {
  const candidates = isAbsolute(program) || program.includes("/")
    ? [program]
    : (Deno.env.get("PATH") ?? "").split(":").filter(Boolean).map((d) => resolve(d, program));
  for (const c of candidates) {
    try {
      const info = await Deno.stat(c);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111)) return c;
    } catch {
      // not there; try the next
    }
  }
  return null;
}
