/** E2E: a job printing 18 MB of 60 KB lines gets bounded status and logs responses. */
import assert from "node:assert/strict";
import { PYTHON, Server, waitTerminal, Workspace } from "./helpers/server.ts";

const LINES = 300;
const WIDTH = 60_000;
const TAIL_BYTES = 64 * 1024;
const PAGE_BYTES = 4 * 1024 * 1024;

const SCRIPT = `import os, sys
for i in range(1, ${LINES} + 1):
    sys.stdout.write(str(i).ljust(${WIDTH}, "x") + "\\n")
open(os.environ["TRAIN_ARTIFACT_PATH"], "w").write("model")
`;

/** GET with the raw body's size: the caps are on what goes over the wire. */
async function get(base: string, path: string) {
  const res = await fetch(base + path);
  const text = await res.text();
  assert.equal(res.status, 200, text.slice(0, 500));
  return { size: new TextEncoder().encode(text).length, body: JSON.parse(text) };
}

Deno.test("e2e: long log lines give bounded responses, at the default caps", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const script = await ws.write("long_lines.py", SCRIPT);
    server = await Server.start(ws.env(await ws.registry({ wide: [PYTHON, script] })));
    const base = server.base;
    const res = await fetch(`${base}/train/wide`, { method: "POST" });
    const id = (await res.json()).data.job_id;
    const job = await waitTerminal(base, id, 90_000);
    assert.equal(job.status, "completed", JSON.stringify(job).slice(0, 1000));

    await t.step("status holds the newest line that fits LOG_TAIL_BYTES", async () => {
      const { size, body } = await get(base, `/train/status/${id}`);
      assert.ok(size < TAIL_BYTES + 8 * 1024, `status is ${size} bytes`);
      assert.equal(body.data.logs, String(LINES).padEnd(WIDTH, "x"));
      assert.equal(body.data.logs_truncated, true);
      assert.equal(body.data.log_lines, LINES);
    });

    await t.step("logs pages stay under LOG_PAGE_BYTES and hold every line in order", async () => {
      const lines: string[] = [];
      let after = 0;
      let pages = 0;
      for (let more = true; more; pages++) {
        const { size, body } = await get(base, `/train/logs/${id}?after=${after}&limit=1000`);
        assert.ok(size <= PAGE_BYTES, `page ${pages} is ${size} bytes`);
        assert.ok(body.entries.length > 0);
        assert.equal(body.next_after, body.entries.at(-1).seq);
        for (const e of body.entries) lines.push(...e.lines);
        after = body.next_after;
        more = body.more;
        if (more) assert.equal(body.truncated, true, "only the byte cap ends a 1000-entry page");
      }
      assert.ok(pages >= 5, `${pages} pages for ${LINES * WIDTH} bytes`);
      assert.equal(lines.length, LINES);
      lines.forEach((line, i) => assert.equal(line, String(i + 1).padEnd(WIDTH, "x")));
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
