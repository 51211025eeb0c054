import assert from "node:assert/strict";
import { readSse } from "../web/static/sse.js";

/** A byte stream delivering `chunks` one by one, as a network would split them. */
function stream(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    pull(controller) {
      const next = chunks.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(encoder.encode(next));
    },
  });
}

async function read(chunks: string[]) {
  const got: { id: string | null; event: string; data: string }[] = [];
  await readSse(stream(chunks), (m) => got.push(m));
  return got;
}

Deno.test("SSE reader (the dashboard's, for streams that need a bearer token)", async (t) => {
  await t.step("messages with id, event and JSON data", async () => {
    const got = await read([
      'id: 7\nevent: submitted\ndata: {"seq":7}\n\n',
      'id: 9\nevent: end\ndata: {"status":"completed"}\n\n',
    ]);
    assert.deepEqual(got, [
      { id: "7", event: "submitted", data: '{"seq":7}' },
      { id: "9", event: "end", data: '{"status":"completed"}' },
    ]);
  });

  await t.step("a message split anywhere, even inside a CRLF, arrives whole", async () => {
    const text = "id: 1\r\nevent: log\r\ndata: a\r\ndata: b\r\n\r\n: keep-alive\r\n\r\n";
    for (let cut = 1; cut < text.length; cut++) {
      const got = await read([text.slice(0, cut), text.slice(cut)]);
      assert.deepEqual(got, [{ id: "1", event: "log", data: "a\nb" }], `cut at ${cut}`);
    }
  });

  await t.step("comments are ignored; no event field means 'message'", async () => {
    assert.deepEqual(await read([": hi\n\ndata:x\n\n"]), [
      { id: null, event: "message", data: "x" },
    ]);
  });

  await t.step("a message cut off by the end of the stream is dropped", async () => {
    assert.deepEqual(await read(["data: done\n\ndata: half"]), [
      { id: null, event: "message", data: "done" },
    ]);
  });
});
