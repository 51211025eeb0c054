/** Turning S3 SDK errors into what a person should check. */

const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "TimeoutError",
]);
const REFUSED = new Set(["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"]);

/** A sentence (with a leading space) naming the setting to check, or "" when we cannot tell. */
export function explain(e: unknown, bucket: string): string {
  const err = e as { name?: string; code?: string; cause?: { code?: string } } | undefined;
  const status = (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  const name = err?.name ?? "";
  const code = err?.code ?? err?.cause?.code ?? "";
  if (name === "NoSuchBucket") {
    return ` Bucket ${bucket} does not exist: create it, or fix ARTIFACT_STORE.`;
  }
  if (REFUSED.has(name) || status === 403) {
    return ` The service refused the request: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY ` +
      `and the bucket's policy.`;
  }
  if (name === "PermanentRedirect" || name === "AuthorizationHeaderMalformed" || status === 301) {
    return ` The bucket is in another region: set AWS_REGION to the bucket's region.`;
  }
  if (UNREACHABLE.has(code) || UNREACHABLE.has(name)) {
    return ` The service could not be reached: check S3_ENDPOINT and the network.`;
  }
  return "";
}
