/** E2E: a real server on the default loopback bind refuses a rebound Host and foreign pages. */
import assert from "node:assert/strict";
import { send } from "../bench/drills/raw_http.ts";
import { http, Server, Workspace } from "./helpers/server.ts";

const encoder = new TextEncoder();

function get(port: number, host: string) {
  const request = `GET /health HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
  return send(port, encoder.encode(request));
}

Deno.test("e2e: Host and Origin checks on the default loopback bind", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const registry = await ws.registry({ noop: ["/bin/true"] });
    server = await Server.start(ws.env({ ...registry, ALLOWED_HOSTS: "trainer.lan" }));
    const port = Number(new URL(server.base).port);

    await t.step("Host: attacker.example is refused with 421, nothing of /health", async () => {
      const res = await get(port, "attacker.example");
      assert.equal(res.status, 421, res.body);
      assert.match(res.body, /ALLOWED_HOSTS/);
      assert.doesNotMatch(res.body, /queue_depth|model_types/);
    });

    await t.step("loopback names and ALLOWED_HOSTS names are answered", async () => {
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, "[::1]", "TRAINER.lan"]) {
        const res = await get(port, host);
        assert.equal(res.status, 200, `${host}: ${res.body}`);
      }
    });

    await t.step("a POST from a foreign page is refused; from curl it starts a job", async () => {
      const refused = await http(server!.base, "POST", "/train/noop", undefined, {
        origin: "https://evil.example",
        "content-type": "text/plain",
      });
      assert.equal(refused.status, 403);
      assert.match(refused.body.message, /CORS_ORIGINS/);
      const jobs = await http(server!.base, "GET", "/train/jobs");
      assert.equal(jobs.body.total_count, 0);
      const ok = await http(server!.base, "POST", "/train/noop");
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
