/** Tiny native programs for jobs, compiled with `cc` at bench time. */

/** True when a C compiler is on PATH. */
export async function haveCc(): Promise<boolean> {
  try {
    const out = await new Deno.Command("cc", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

/** Compiles `source` to `${dir}/${name}` with -O2 and returns the binary's path. */
export async function compileC(dir: string, name: string, source: string): Promise<string> {
  const src = `${dir}/${name}.c`;
  const bin = `${dir}/${name}`;
  await Deno.writeTextFile(src, source);
  const out = await new Deno.Command("cc", { args: ["-O2", "-o", bin, src], stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`cc ${name}.c failed: ${new TextDecoder().decode(out.stderr)}`);
  return bin;
}

/**
 * Writes its own start time (CLOCK_REALTIME, ns) to `$TRAIN_OUTPUT_DIR/start-$TRAIN_JOB_ID`
 * and to the artifact path (so the job completes), then exits.
 */
export const STAMP_C = `
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
  const char *dir = getenv("TRAIN_OUTPUT_DIR"), *id = getenv("TRAIN_JOB_ID");
  const char *artifact = getenv("TRAIN_ARTIFACT_PATH");
  char path[4096];
  snprintf(path, sizeof path, "%s/start-%s.tmp", dir, id);
  FILE *f = fopen(path, "w");
  if (!f) return 3;
  fprintf(f, "%lld\\n", ns);
  fclose(f);
  char done[4096];
  snprintf(done, sizeof done, "%s/start-%s", dir, id);
  rename(path, done);
  if (artifact && *artifact) { f = fopen(artifact, "w"); if (f) { fputs("model\\n", f); fclose(f); } }
  return 0;
}
`;

/**
 * Prints argv[1] numbered lines of 60 bytes (59 + newline) to stdout as fast as stdio
 * allows, writes the artifact when TRAIN_ARTIFACT_PATH is set, and prints to stderr its own
 * run time and the longest time one printf took (ns): stdio writes to the pipe in 4 KiB
 * blocks, so that is how long the child was blocked on a full pipe at worst.
 */
export const LINES_C = `
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static long long now(void) {
  struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
int main(int argc, char **argv) {
  long long start = now(), last = start, stall = 0;
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  for (long i = 1; i <= n; i++) {
    printf("line %09ld abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHI\\n", i);
    long long t = now();
    if (t - last > stall) stall = t - last;
    last = t;
  }
  fflush(stdout);
  long long took = now() - start;
  const char *artifact = getenv("TRAIN_ARTIFACT_PATH");
  if (artifact && *artifact) { FILE *f = fopen(artifact, "w"); if (f) { fputs("model\\n", f); fclose(f); } }
  fprintf(stderr, "took_ns %lld max_stall_ns %lld\\n", took, stall);
  return 0;
}
`;
