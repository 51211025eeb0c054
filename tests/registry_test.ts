/** The model registry: built-ins, MODEL_REGISTRY files, type lookup, hyperparameter checks. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { NotFoundError, ValidationError } from "../errors.ts";
import {
  BUILTIN_TYPES,
  loadRegistry,
  PYTHON,
  requireType,
  splitHyperparameters,
} from "../models/registry.ts";
import { tempDir } from "./helpers/app.ts";

async function registryFile(dir: string, content: unknown, name = "registry.json") {
  const path = join(dir, name);
  await Deno.writeTextFile(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

Deno.test("built-in types run the Python scripts beside the registry", async () => {
  const registry = await loadRegistry();
  assert.deepEqual([...registry.keys()], ["neural-net", "xgboost", "random-forest"]);
  for (const type of registry.values()) {
    assert.equal(type.command[0], PYTHON);
    assert.match(type.command[1], /\/models\/train(_xgb|_rf)?\.py$/);
    assert.ok(type.builtin);
    await Deno.stat(type.command[1]);
  }
});

Deno.test("MODEL_REGISTRY adds and overrides types", async (t) => {
  await using dir = await tempDir();
  await Deno.mkdir(join(dir.path, "scripts"));
  await Deno.writeTextFile(join(dir.path, "scripts", "train.sh"), "exit 0");
  const path = await registryFile(dir.path, {
    "my-model": {
      command: [
        "/bin/sh",
        "./scripts/train.sh",
        "scripts/train.sh",
        "../elsewhere.sh",
        "--flag",
        "sh",
      ],
      env: ["CUDA_VISIBLE_DEVICES"],
      extension: ".pt",
    },
    xgboost: { command: ["{python}", "alt/xgb.py"] },
  });
  // Resolved against the file's folder, not the working directory.
  const registry = await loadRegistry(path);
  await t.step("a new type, with relative paths resolved against the file's folder", () => {
    const mine = registry.get("my-model")!;
    assert.deepEqual(mine.command, [
      "/bin/sh",
      join(dir.path, "scripts/train.sh"),
      join(dir.path, "scripts/train.sh"),
      join(dir.path, "../elsewhere.sh"),
      "--flag",
      "sh",
    ]);
    assert.deepEqual(mine.env, ["CUDA_VISIBLE_DEVICES"]);
    assert.equal(mine.extension, ".pt");
    assert.equal(mine.builtin, false);
  });
  await t.step("an override replaces the built-in; the others stay", () => {
    assert.deepEqual([...registry.keys()], ["neural-net", "xgboost", "random-forest", "my-model"]);
    const xgb = registry.get("xgboost")!;
    assert.deepEqual(
      xgb.command,
      [PYTHON, "alt/xgb.py"],
      "a path that does not exist stays as given",
    );
    assert.equal(xgb.extension, ".joblib");
    assert.deepEqual(registry.get("neural-net"), BUILTIN_TYPES[0]);
  });
  await t.step("custom types accept any JSON object as hyperparameters", () => {
    const shares = splitHyperparameters([registry.get("my-model")!], { anything: { deep: [1] } });
    assert.deepEqual(shares.get("my-model"), { anything: { deep: [1] } });
  });
  await t.step(
    "a relative MODEL_REGISTRY path is resolved from the working directory",
    async () => {
      const relative = await loadRegistry(join(dir.path, ".", "registry.json"));
      assert.deepEqual(relative.get("my-model")?.command, registry.get("my-model")?.command);
    },
  );
});

Deno.test("an invalid MODEL_REGISTRY file fails with a clear error", async (t) => {
  await using dir = await tempDir();
  const cases: [string, unknown, RegExp][] = [
    ["not JSON", "{ nope", /not valid JSON/],
    ["no command", { mine: { env: [] } }, /mine\.command/],
    ["an empty command", { mine: { command: [] } }, /mine\.command/],
    ["an unknown field", { mine: { command: ["x"], shell: true } }, /shell/],
    ["a bad type name", { "My Model": { command: ["x"] } }, /lowercase/],
    ["a bad env name", { mine: { command: ["x"], env: ["A-B"] } }, /mine\.env/],
    ["a bad extension", { mine: { command: ["x"], extension: "pt" } }, /mine\.extension/],
    ["the reserved name all", { all: { command: ["x"] } }, /"all" is reserved/],
    ["the reserved name jobs", { jobs: { command: ["x"] } }, /"jobs" is reserved/],
    ["not an object", ["x"], /MODEL_REGISTRY=/],
  ];
  for (const [name, content, message] of cases) {
    await t.step(name, async () => {
      const path = await registryFile(dir.path, content);
      await assert.rejects(loadRegistry(path), (e: Error) => {
        assert.match(e.message, /^MODEL_REGISTRY/);
        assert.match(e.message, message);
        return true;
      });
    });
  }
  await t.step("a missing file", async () => {
    await assert.rejects(loadRegistry(join(dir.path, "absent.json")), /absent\.json: cannot read/);
  });
});

Deno.test("requireType names the known types", async () => {
  const registry = await loadRegistry();
  assert.equal(requireType(registry, "xgboost", 404).name, "xgboost");
  assert.throws(() => requireType(registry, "svm", 404), (e) => {
    assert.ok(e instanceof NotFoundError);
    assert.match(e.message, /"svm".*neural-net, xgboost, random-forest, all/);
    return true;
  });
  assert.throws(() => requireType(registry, "svm", 422), ValidationError);
});

Deno.test("splitHyperparameters", async (t) => {
  const registry = await loadRegistry();
  const all = [...registry.values()];
  const xgb = [registry.get("xgboost")!];
  await t.step("a single type gets its defaults and the given values", () => {
    const share = splitHyperparameters(xgb, { max_depth: 3 }).get("xgboost")!;
    assert.equal(share.max_depth, 3);
    assert.equal(share.n_estimators, 100);
  });
  await t.step("an unknown key or a wrong type -> 422 listing the allowed keys", () => {
    assert.throws(() => splitHyperparameters(xgb, { max_depth: "3", epochs: 5 }), (e) => {
      assert.ok(e instanceof ValidationError);
      assert.match(e.message, /hyperparameters\.max_depth/);
      // `epochs` is the neural net's: the message names the type it was sent to.
      assert.match(e.message, /hyperparameters\.epochs \(not a hyperparameter of xgboost\)/);
      const allowed = (e.details.at(-1) as { allowed: Record<string, string[]> }).allowed;
      assert.ok(allowed.xgboost.includes("learning_rate"));
      return true;
    });
  });
  await t.step('"all": each type gets only the keys it knows', () => {
    const shares = splitHyperparameters(all, { epochs: 3, n_estimators: 7, activation: "tanh" });
    assert.equal(shares.get("neural-net")!.epochs, 3);
    assert.equal(shares.get("neural-net")!.activation, "tanh");
    assert.equal(shares.get("xgboost")!.n_estimators, 7);
    assert.equal(shares.get("random-forest")!.n_estimators, 7);
    assert.equal("epochs" in shares.get("xgboost")!, false);
  });
  await t.step('"all": a key no type knows -> 422', () => {
    assert.throws(
      () => splitHyperparameters(all, { epochs: 3, bogus: 1 }),
      /hyperparameters\.bogus \(not a hyperparameter of any model\)/,
    );
  });
  await t.step('"all": a value wrong for a type that knows the key -> 422', () => {
    assert.throws(() => splitHyperparameters(all, { max_depth: 50 }), /xgboost/);
  });
});
