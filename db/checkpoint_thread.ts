/**
 * Entry point of the checkpoint thread (a Worker started by db/checkpointer.ts). It holds one
 * connection to the database file and, each time it is poked, copies what the WAL holds into
 * the database file with a PASSIVE checkpoint, then says it is idle again.
 */
/// <reference lib="deno.worker" />
import Sqlite from "libsql";

type Message = { open: string } | { poke: true } | { close: true };

let connection: InstanceType<typeof Sqlite> | null = null;

self.addEventListener("message", (event: MessageEvent<Message>) => {
  const m = event.data;
  if ("open" in m) {
    try {
      // The same native library as the writer's (see db/reader.ts): one SQLite, one set of
      // locks.
      connection = new Sqlite(m.open);
      // It never writes a row: only checkpoints, which take no write lock.
      connection.exec("PRAGMA query_only = ON");
    } catch (e) {
      self.postMessage({ failed: `cannot open ${m.open}: ${e}` });
      self.close();
    }
  } else if ("poke" in m) {
    try {
      // PASSIVE never waits: it copies the frames no reader still needs and leaves the rest to
      // the next poke. The writer goes on appending meanwhile.
      connection?.exec("PRAGMA wal_checkpoint(PASSIVE)");
    } catch (e) {
      // A failed checkpoint loses nothing (the frames stay in the WAL), and the next poke
      // tries again; the writer's own autocheckpoint bound still applies.
      console.error(`[trainer] WAL checkpoint failed: ${e}`);
    }
    self.postMessage("idle");
  } else if ("close" in m) {
    connection?.close();
    connection = null;
    self.postMessage("closed");
    self.close();
  }
});
