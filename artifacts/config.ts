/**
 * Choosing the artifact store from the environment.
 *
 * - `ARTIFACT_STORE` unset or empty: files in MODELS_DIR.
 * - `ARTIFACT_STORE=s3://bucket/prefix`: an S3-compatible service, with `AWS_ACCESS_KEY_ID`,
 *   `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`; without them the SDK's default chain
 *   applies), `AWS_REGION` (default us-east-1), `S3_ENDPOINT` (for a service other than
 *   AWS, e.g. http://minio:9000) and `S3_FORCE_PATH_STYLE=1` (most such services need it).
 */
import { S3Client } from "@aws-sdk/client-s3";
import { FolderStore } from "./folder_store.ts";
import { S3Store } from "./s3_store.ts";
import type { ArtifactStore } from "./store.ts";

/** A bad ARTIFACT_STORE or S3 setting; the message names the variable. */
export class ArtifactConfigError extends Error {}

type Env = Record<string, string | undefined>;

// AWS's rules for bucket names (3-63 characters, lowercase, digits, "." and "-").
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const S3_URL = /^s3:\/\/([^/]*)(?:\/(.*))?$/;

/** The store that `value` (ARTIFACT_STORE) names; throws ArtifactConfigError when it is bad. */
export function parseArtifactStore(
  value: string | undefined,
  modelsDir: string,
  env: Env,
): ArtifactStore {
  if (value === undefined || value === "") return new FolderStore(modelsDir);
  const url = S3_URL.exec(value);
  if (!url) {
    throw new ArtifactConfigError(
      `ARTIFACT_STORE=${JSON.stringify(value)}: must be s3://bucket or s3://bucket/prefix, ` +
        `or unset to keep models in MODELS_DIR`,
    );
  }
  const [, bucket, path = ""] = url;
  if (!BUCKET.test(bucket)) {
    throw new ArtifactConfigError(
      bucket === ""
        ? `ARTIFACT_STORE=${value}: names no bucket; write s3://bucket or s3://bucket/prefix`
        : `ARTIFACT_STORE=${value}: "${bucket}" is not a bucket name (3-63 characters: ` +
          `lowercase letters, digits, "." and "-")`,
    );
  }
  const prefix = path.replace(/^\/+|\/+$/g, "");
  if (prefix !== "" && prefix.split("/").some((p) => p === "" || p === "." || p === "..")) {
    throw new ArtifactConfigError(
      `ARTIFACT_STORE=${value}: the prefix "${prefix}" has an empty, "." or ".." part`,
    );
  }
  return new S3Store({ client: s3ClientFrom(env), bucket, prefix });
}

/** An S3 client configured from the standard variables; see the module comment. */
export function s3ClientFrom(env: Env): S3Client {
  const endpoint = env.S3_ENDPOINT || undefined;
  if (endpoint && !/^https?:\/\/[^/\s]+/.test(endpoint)) {
    throw new ArtifactConfigError(
      `S3_ENDPOINT=${JSON.stringify(endpoint)}: must be a URL like http://minio:9000`,
    );
  }
  const flag = (env.S3_FORCE_PATH_STYLE ?? "").toLowerCase();
  if (!["", "0", "1", "true", "false"].includes(flag)) {
    throw new ArtifactConfigError(
      `S3_FORCE_PATH_STYLE=${JSON.stringify(flag)}: must be 1, true, 0 or false`,
    );
  }
  const accessKeyId = env.AWS_ACCESS_KEY_ID || undefined;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY || undefined;
  if (!accessKeyId !== !secretAccessKey) {
    throw new ArtifactConfigError(
      "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: set both, or neither",
    );
  }
  return new S3Client({
    region: env.AWS_REGION || "us-east-1",
    endpoint,
    forcePathStyle: flag === "1" || flag === "true",
    credentials: accessKeyId && secretAccessKey
      ? { accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN || undefined }
      : undefined,
  });
}
