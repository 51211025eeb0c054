/** `deno task rebuild`: rebuilds the projections of DATABASE_URL from its event log. */
import { loadConfig } from "../config.ts";
import { DatabaseInUseError, lockDatabase } from "../jobs/recovery.ts";
import { openDatabase } from "./client.ts";
import { rebuildProjections } from "./rebuild.ts";

const config = loadConfig(Deno.env.toObject());
// A live server keeps its projection in memory and writes it on every commit: rebuilding
// under it would race those writes. The server's lock says whether one holds the database.
const lock = await lockDatabase(config.DATABASE_URL, 500).catch((e) => {
  if (!(e instanceof DatabaseInUseError)) throw e;
  console.error(
    `deno task rebuild: refusing to rebuild DATABASE_URL=${config.DATABASE_URL}: a server is ` +
      `using it${e.holder ? ` (${e.holder})` : ""}; stop the server first, then run this again`,
  );
  Deno.exit(1);
});
const database = await openDatabase(config.DATABASE_URL, config.DATABASE_AUTH_TOKEN);
const started = performance.now();
const count = await rebuildProjections(database);
console.log(`rebuilt ${count} jobs in ${Math.round(performance.now() - started)} ms`);
database.close();
lock?.close();
