/** checkSettings(): settings that parse but cannot work, on real files; the CSV header reader. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../config.ts";
import { checkSettings, firstRow } from "../startup_checks.ts";

Deno.test("firstRow reads the header as Python's csv module does", () => {
  assert.deepEqual(firstRow("a,b,c\n1,2,3\n", true), ["a", "b", "c"]);
  assert.deepEqual(firstRow("\n\n , \n x , y \r\n", true), ["x", "y"], "blank rows skipped");
  assert.deepEqual(firstRow('"a,1","say ""hi""",c\n', true), ["a,1", 'say "hi"', "c"]);
  assert.deepEqual(firstRow('"multi\nline",b\n', true), ["multi\nline", "b"]);
  assert.deepEqual(firstRow("a,b", true), ["a", "b"], "no final newline");
  assert.equal(firstRow("a,b", false), undefined, "more text may follow");
  assert.equal(firstRow('"a\n', false), undefined, "inside a quoted field");
  assert.equal(firstRow("\n \n", true), null);
});

Deno.test("checkSettings refuses what cannot work, naming the variable", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "trainer_checks_" });
  const check = (env: Record<string, string>) =>
    checkSettings(loadConfig({ MODELS_DIR: join(dir, "models"), ...env }));
  const refused = async (env: Record<string, string>, pattern: RegExp) => {
    await assert.rejects(check(env), (e) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.match(e.message, pattern);
      return true;
    });
  };
  try {
    const csv = join(dir, "data.csv");
    await Deno.writeTextFile(csv, "\uFEFFx1, x2 ,label\n1,2,a\n");
    await Deno.writeTextFile(join(dir, "file"), "");

    await t.step("good settings pass and create MODELS_DIR", async () => {
      await check({ DATASET_PATH: csv, DATASET_TARGET: "x2" });
      assert.ok((await Deno.stat(join(dir, "models"))).isDirectory);
      assert.deepEqual([...Deno.readDirSync(join(dir, "models"))], [], "no probe left behind");
    });
    await t.step("MODELS_DIR under a regular file", async () => {
      await refused({ MODELS_DIR: join(dir, "file", "models") }, /^MODELS_DIR=.*file\/models/);
    });
    await t.step("a DATASET_PATH that does not exist, or is a folder", async () => {
      await refused({ DATASET_PATH: join(dir, "nope.csv") }, /^DATASET_PATH=.*does not exist/);
      await refused({ DATASET_PATH: dir }, /^DATASET_PATH=.*is not a file/);
    });
    await t.step("an empty or non-UTF-8 DATASET_PATH", async () => {
      await refused({ DATASET_PATH: join(dir, "file") }, /^DATASET_PATH=.*is empty/);
      const latin = join(dir, "latin1.csv");
      await Deno.writeFile(latin, new Uint8Array([0x61, 0xe9, 0x2c, 0x62, 0x0a]));
      await refused({ DATASET_PATH: latin }, /^DATASET_PATH=.*not UTF-8/);
    });
    await t.step("a DATASET_TARGET that is not a column lists the columns", async () => {
      await refused(
        { DATASET_PATH: csv, DATASET_TARGET: "target" },
        /^DATASET_TARGET=target is not a column of DATASET_PATH=.*columns are: x1, x2, label$/,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
