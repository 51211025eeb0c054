/** measureFile: the size and sha256 of a file, across the 1 MiB synchronous/async boundary. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { measureFile } from "../artifacts/checksum.ts";

Deno.test("measureFile gives the size and sha256 of files of every size", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const size of [0, 1, 4096, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 << 20]) {
      const bytes = new Uint8Array(size).map((_, i) => (i * 31 + 7) & 0xff);
      const path = `${dir}/model-${size}`;
      await Deno.writeFile(path, bytes);
      const want = createHash("sha256").update(bytes).digest("hex");
      assert.deepEqual(await measureFile(path), { size, sha256: want }, `size ${size}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
