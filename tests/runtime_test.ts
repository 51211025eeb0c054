/**
 * The runtime check (models/runtime.ts) starts Python only where it tells something: never
 * for a registry without {python} types, and no further than the first interpreter that has
 * every module. Fake interpreters record each start in a file.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type ModelType, PYTHON } from "../models/registry.ts";
import { checkRuntimes } from "../models/runtime.ts";
import { tempDir } from "./helpers/app.ts";

function type(name: string, command: string[], requires: string[] = []): ModelType {
  return {
    name,
    command,
    params: undefined as unknown as ModelType["params"],
    env: [],
    extension: ".bin",
    requires,
    builtin: false,
  };
}

/** An interpreter that appends its name to `log`, then prints `missing` (one per line). */
async function fakePython(dir: string, name: string, log: string, missing: string[] = []) {
  const path = join(dir, name);
  const lines = missing.map((m) => `echo ${m}`).join("\n");
  await Deno.writeTextFile(path, `#!/bin/sh\necho ${name} >> ${log}\n${lines}\n`);
  await Deno.chmod(path, 0o755);
  return path;
}

async function started(log: string): Promise<string[]> {
  try {
    return (await Deno.readTextFile(log)).split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

Deno.test("the runtime check starts Python only where it tells something", async (t) => {
  await using dir = await tempDir();
  const log = join(dir.path, "started.log");
  const lacking = await fakePython(dir.path, "lacking", log, ["xgboost"]);
  const full = await fakePython(dir.path, "full", log);
  const later = await fakePython(dir.path, "later", log);

  await t.step("a registry without {python} types starts none", async () => {
    const registry = new Map([["noop", type("noop", ["/bin/true"])]]);
    const found = await checkRuntimes(registry, undefined, [lacking, full, later]);
    assert.deepEqual(await started(log), []);
    assert.equal(found.get("noop")?.runnable, true);
    assert.equal(found.get("noop")?.program, "/bin/true");
  });

  await t.step("probes stop at the first interpreter with every module", async () => {
    const registry = new Map([
      ["xgb", type("xgb", [PYTHON, "x.py"], ["sklearn", "xgboost"])],
      ["plain", type("plain", [PYTHON, "p.py"], ["sklearn"])],
    ]);
    const found = await checkRuntimes(registry, undefined, [lacking, full, later]);
    assert.deepEqual(await started(log), ["lacking", "full"]);
    // Each type still runs on the first interpreter that has its modules.
    assert.equal(found.get("plain")?.program, lacking);
    assert.equal(found.get("xgb")?.program, full);
  });

  await t.step(
    "without such an interpreter every one is probed, and the hint names one",
    async () => {
      await Deno.remove(log);
      const registry = new Map([["xgb", type("xgb", [PYTHON, "x.py"], ["xgboost"])]]);
      const found = await checkRuntimes(registry, undefined, [lacking, lacking]);
      assert.deepEqual(await started(log), ["lacking", "lacking"]);
      assert.equal(found.get("xgb")?.runnable, false);
      assert.match(
        found.get("xgb")?.hint ?? "",
        /Python packages missing \(xgboost\) for .*lacking/,
      );
    },
  );
});
