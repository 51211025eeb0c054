/**
 * The C library's calls the job launcher makes through Deno's FFI (posix_spawn.ts and
 * fd_poller.ts), loaded once. `poll`, and `posix_spawn` until its child has exec'd, wait on
 * the runtime's blocking-thread pool (`nonblocking`); `read_async` passes through it without
 * waiting (pipes are read in non-blocking mode), and every other call returns at once.
 * That pool has 32 threads per isolate, shared with file and DNS work: a blocking `waitpid` and
 * `read` per job held two of them for each job's whole run, and 16 jobs took all 32.
 */
const SYMBOLS = {
  /**
   * On the pool: the calling thread waits in the vfork-style clone until the child has exec'd,
   * which was a quarter of the supervisor thread's time with 16 no-op jobs at a time.
   */
  posix_spawn: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  posix_spawnattr_init: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_setflags: { parameters: ["buffer", "i16"], result: "i32" },
  posix_spawnattr_setsigmask: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawnattr_setsigdefault: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawn_file_actions_init: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_destroy: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_adddup2: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  posix_spawn_file_actions_addopen: {
    parameters: ["buffer", "i32", "buffer", "i32", "u32"],
    result: "i32",
  },
  sigemptyset: { parameters: ["buffer"], result: "i32" },
  sigfillset: { parameters: ["buffer"], result: "i32" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /**
   * read(2) through the pool: on a non-blocking pipe it returns at once, and its answer comes
   * back as a task of its own, so a pipe that always has data cannot keep the thread's timers
   * and messages waiting (a synchronous read loop runs as one chain of microtasks).
   */
  read_async: {
    name: "read",
    parameters: ["i32", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  pidfd_open: { parameters: ["i32", "u32"], result: "i32" },
  waitid: { parameters: ["i32", "i32", "buffer", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  /** A job's niceness (process.ts): node's setPriority throws, at ~20 µs, for a job gone. */
  setpriority: { parameters: ["i32", "u32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  /** A child's start time without reading /proc (posix_spawn.ts). */
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  sysconf: { parameters: ["i32"], result: "i64" },
  /** Only when a pidfd cannot be had (fd_poller.ts). */
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32", nonblocking: true },
} as const;

export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let loaded: Libc | null | undefined;

/** The calling thread's errno, read right after a call of this table failed. */
export function errno(c: Libc): number {
  const where = c.__errno_location();
  return where === null ? 0 : new Deno.UnsafePointerView(where).getInt32();
}

/**
 * glibc's calls; null when this process may not use FFI or has no glibc 2.36 (pidfd_open)
 * or later: jobs then start another way (spawn.ts).
 */
export function libc(): Libc | null {
  if (loaded !== undefined) return loaded;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return loaded = null;
    return loaded = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  } catch {
    return loaded = null;
  }
}
