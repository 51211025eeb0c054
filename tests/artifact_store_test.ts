/**
 * The artifact stores against one contract: the folder store on a temp dir, the S3 store on a
 * real S3-compatible server (s3rver). Then what only S3 has: retries and actionable errors.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { parseArtifactStore } from "../artifacts/config.ts";
import { FolderStore } from "../artifacts/folder_store.ts";
import { S3Store } from "../artifacts/s3_store.ts";
import {
  ArtifactIntegrityError,
  ArtifactNameError,
  ArtifactRangeError,
  type ArtifactStore,
  ArtifactStoreError,
} from "../artifacts/store.ts";
import { startS3rver } from "./helpers/s3rver.ts";

const MiB = 1 << 20;

/** Deterministic bytes, different per seed. */
function bytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return out;
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** `data` in 64 KiB chunks; `failAfter` bytes in, the stream errors instead. */
function streamOf(data: Uint8Array, failAfter?: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (failAfter !== undefined && at >= failAfter) {
        return controller.error(new Error("disk read failed midway"));
      }
      if (at >= data.byteLength) return controller.close();
      const end = Math.min(at + 64 * 1024, data.byteLength);
      controller.enqueue(data.slice(at, end));
      at = end;
    },
  });
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function names(store: ArtifactStore): Promise<string[]> {
  const out: string[] = [];
  for await (const e of store.list()) out.push(e.name);
  return out.sort();
}

/** The contract every store keeps. `leftovers` lists what a failed put might leave behind. */
async function contract(
  t: Deno.TestContext,
  store: ArtifactStore,
  leftovers: () => Promise<string[]>,
) {
  // 20 MiB: more than two S3 parts, so the S3 store goes multipart.
  const big = bytes(20 * MiB);
  const small = bytes(1000, 2);

  await t.step("put streams the bytes and reports their size and sha256", async () => {
    const stored = await store.put("big.bin", streamOf(big), { sha256: sha256(big) });
    assert.equal(stored.size, big.byteLength);
    assert.equal(stored.sha256, sha256(big));
    assert.match(stored.location, /big\.bin$/);
    const stat = await store.stat("big.bin");
    assert.equal(stat?.size, big.byteLength);
    assert.ok(stat.modified instanceof Date);
  });

  await t.step("put from a file path hashes the file itself", async () => {
    const path = await Deno.makeTempFile();
    try {
      await Deno.writeFile(path, small);
      const stored = await store.put("small.bin", path);
      assert.deepEqual([stored.size, stored.sha256], [1000, sha256(small)]);
    } finally {
      await Deno.remove(path);
    }
  });

  await t.step("get returns the whole artifact", async () => {
    const read = await store.get("big.bin");
    assert.ok(read);
    assert.deepEqual([read.size, read.total, read.start, read.end], [
      big.length,
      big.length,
      0,
      big.length - 1,
    ]);
    assert.equal(sha256(await readAll(read.body)), sha256(big));
  });

  await t.step("get with bytes=10-19 returns exactly those bytes and the total", async () => {
    const read = await store.get("big.bin", { start: 10, end: 19 });
    assert.ok(read);
    assert.deepEqual([read.size, read.total, read.start, read.end], [10, big.length, 10, 19]);
    assert.deepEqual(await readAll(read.body), big.slice(10, 20));
    const tail = await store.get("small.bin", { start: 990, end: 5000 });
    assert.deepEqual([tail?.size, tail?.end], [10, 999]);
    assert.deepEqual(await readAll(tail!.body), small.slice(990));
  });

  await t.step("a range past the end is refused with the total", async () => {
    await assert.rejects(
      () => store.get("small.bin", { start: 1000 }),
      (e) => e instanceof ArtifactRangeError && e.total === 1000,
    );
  });

  await t.step("list shows the artifacts with their sizes", async () => {
    const entries = [];
    for await (const e of store.list()) entries.push([e.name, e.size]);
    entries.sort();
    assert.deepEqual(entries, [["big.bin", big.length], ["small.bin", 1000]]);
  });

  await t.step("a stream that errors midway leaves nothing, and the old artifact", async () => {
    // 9 MiB in: on S3, the first part is uploaded before the error.
    const put = store.put("big.bin", streamOf(bytes(20 * MiB, 3), 9 * MiB), {
      sha256: "0".repeat(64),
    });
    await assert.rejects(put, /disk read failed midway/);
    await assert.rejects(
      store.put("new.bin", streamOf(big, 9 * MiB), { sha256: sha256(big) }),
      /disk read failed midway/,
    );
    assert.equal(await store.stat("new.bin"), null);
    assert.equal(sha256(await readAll((await store.get("big.bin"))!.body)), sha256(big));
    assert.deepEqual(await leftovers(), []);
  });

  await t.step("a wrong declared sha256 or size is refused and leaves nothing", async () => {
    const wrong = sha256(small);
    for (const data of [small, big]) {
      await assert.rejects(
        store.put("wrong.bin", streamOf(data), { sha256: data === small ? sha256(big) : wrong }),
        (e) => e instanceof ArtifactIntegrityError && /sha256 of the bytes is/.test(e.message),
      );
    }
    await assert.rejects(
      store.put("wrong.bin", streamOf(small), { sha256: sha256(small), size: 999 }),
      ArtifactIntegrityError,
    );
    assert.equal(await store.stat("wrong.bin"), null);
    assert.deepEqual(await names(store), ["big.bin", "small.bin"]);
    assert.deepEqual(await leftovers(), []);
  });

  await t.step("names that are not plain file names are refused", async () => {
    for (const name of ["../x", "a/b", ".hidden", "", "a..b", "x\\y", "a b"]) {
      await assert.rejects(
        store.put(name, streamOf(small), { sha256: sha256(small) }),
        ArtifactNameError,
      );
      await assert.rejects(store.get(name), ArtifactNameError);
    }
  });

  await t.step("a stream without its sha256 is refused", async () => {
    await assert.rejects(store.put("x.bin", streamOf(small)), /needs its sha256/);
  });

  await t.step("delete removes; a second delete says there was none", async () => {
    assert.equal(await store.delete("big.bin"), true);
    assert.equal(await store.delete("big.bin"), false);
    assert.equal(await store.stat("big.bin"), null);
    assert.equal(await store.get("big.bin"), null);
    assert.deepEqual(await names(store), ["small.bin"]);
  });
}

Deno.test("folder store", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "trainer_artifact_store_" });
  const folder = join(dir, "models");
  try {
    const store = parseArtifactStore(undefined, folder, {});
    assert.ok(store instanceof FolderStore);
    assert.equal(store.describe(), `folder ${folder}`);
    await t.step("an empty store that was never written lists nothing", async () => {
      assert.deepEqual(await names(store), []);
    });
    const temps = () =>
      Promise.resolve(
        [...Deno.readDirSync(folder)].map((e) => e.name).filter((n) => n.startsWith(".")),
      );
    await contract(t, store, temps);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("S3 store on s3rver", async (t) => {
  const s3 = await startS3rver();
  const env = {
    S3_ENDPOINT: s3.endpoint,
    S3_FORCE_PATH_STYLE: "1",
    AWS_ACCESS_KEY_ID: "S3RVER",
    AWS_SECRET_ACCESS_KEY: "S3RVER",
  };
  const store = parseArtifactStore(`s3://${s3.bucket}/runs/`, "/unused", env);
  try {
    assert.equal(store.describe(), `s3://${s3.bucket}/runs`);
    await t.step("an empty bucket lists nothing", async () => {
      assert.deepEqual(await names(store), []);
    });
    // Unfinished multipart uploads are the S3 counterpart of temp files.
    await contract(t, store, () => s3.pendingUploads());

    await t.step("the sha256 is stored as x-amz-meta-sha256", async () => {
      const data = bytes(5000, 4);
      await store.put("meta.bin", streamOf(data), { sha256: sha256(data) });
      assert.equal((await store.stat("meta.bin"))?.sha256, sha256(data));
      const raw = await fetch(`${s3.endpoint}/${s3.bucket}/runs/meta.bin`, { method: "HEAD" });
      assert.equal(raw.headers.get("x-amz-meta-sha256"), sha256(data));
      assert.equal((await store.get("meta.bin"))?.sha256, sha256(data));
      await (await store.get("meta.bin"))?.body.cancel();
    });

    await t.step("an abort that fails is reported with what to do", async () => {
      s3.abortSupported = false;
      try {
        const data = bytes(12 * MiB, 5);
        await assert.rejects(
          store.put("stuck.bin", streamOf(data, 10 * MiB), { sha256: sha256(data) }),
          (e) =>
            e instanceof ArtifactStoreError && /disk read failed midway/.test(e.message) &&
            /could not be aborted/.test(e.message) &&
            /AbortIncompleteMultipartUpload/.test(e.message),
        );
        assert.equal((await s3.pendingUploads()).length, 1);
      } finally {
        s3.abortSupported = true;
      }
    });
  } finally {
    store.close();
    await s3.close();
  }
});

Deno.test("S3 store: retries and errors a person can act on", async (t) => {
  const s3 = await startS3rver();
  const clients: S3Client[] = [];
  const client = (endpoint = s3.endpoint) => {
    const c = new S3Client({
      region: "us-east-1",
      endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
      maxAttempts: 1,
    });
    clients.push(c);
    return c;
  };
  const retry = { tries: 3, delaysMs: [1] };
  const file = await Deno.makeTempFile();
  const data = bytes(3000, 6);
  await Deno.writeFile(file, data);
  try {
    await t.step("a failed upload of a file is tried again", async () => {
      const c = client();
      let puts = 0;
      c.middlewareStack.add((next, context) => (args) => {
        if (context.commandName === "PutObjectCommand" && ++puts === 1) {
          throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
        }
        return next(args);
      }, { step: "initialize" });
      const store = new S3Store({ client: c, bucket: s3.bucket, retry });
      const stored = await store.put("retried.bin", file);
      assert.deepEqual([stored.size, stored.sha256, puts], [3000, sha256(data), 2]);
    });

    await t.step("an unreachable service fails after 3 tries, naming S3_ENDPOINT", async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = listener.addr.port;
      listener.close();
      const store = new S3Store({ client: client(`http://127.0.0.1:${port}`), bucket: "b", retry });
      await assert.rejects(
        store.put("x.bin", file),
        (e) =>
          e instanceof ArtifactStoreError && /after 3 tries/.test(e.message) &&
          /S3_ENDPOINT/.test(e.message),
      );
    });

    await t.step("a missing bucket is named, and not retried", async () => {
      const store = new S3Store({ client: client(), bucket: "no-such-bucket", retry });
      await assert.rejects(
        store.put("x.bin", file),
        (e) =>
          e instanceof ArtifactStoreError && /no-such-bucket does not exist/.test(e.message) &&
          !/tries/.test(e.message),
      );
    });
  } finally {
    for (const c of clients) c.destroy();
    await Deno.remove(file);
    await s3.close();
  }
});

Deno.test("parseArtifactStore: clear errors naming the variable", async (t) => {
  const bad: [string | undefined, Record<string, string>, RegExp][] = [
    ["s3://", {}, /ARTIFACT_STORE=s3:\/\/: names no bucket/],
    ["s3:///prefix", {}, /names no bucket/],
    ["s3://My_Bucket", {}, /"My_Bucket" is not a bucket name/],
    ["s3://b-1/a//b", {}, /prefix "a\/\/b" has an empty/],
    ["/data/models", {}, /ARTIFACT_STORE="\/data\/models": must be s3:\/\/bucket/],
    ["s3://bucket", { S3_ENDPOINT: "minio:9000" }, /S3_ENDPOINT="minio:9000": must be a URL/],
    ["s3://bucket", { S3_FORCE_PATH_STYLE: "yes" }, /S3_FORCE_PATH_STYLE="yes"/],
    ["s3://bucket", { AWS_ACCESS_KEY_ID: "k" }, /set both, or neither/],
  ];
  for (const [value, env, message] of bad) {
    await t.step(`${value} ${JSON.stringify(env)}`, () => {
      assert.throws(() => parseArtifactStore(value, "/m", env), message);
    });
  }
  await t.step("a good URL: bucket and prefix", () => {
    const store = parseArtifactStore("s3://my.bucket-1/a/b/", "/m", { AWS_REGION: "eu-west-1" });
    assert.ok(store instanceof S3Store);
    assert.deepEqual([store.bucket, store.prefix, store.describe()], [
      "my.bucket-1",
      "a/b",
      "s3://my.bucket-1/a/b",
    ]);
    store.close();
  });
});
