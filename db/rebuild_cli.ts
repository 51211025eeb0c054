/** `deno task rebuild`: rebuilds the projections of DATABASE_URL from its event log. */
import { loadConfig } from "../config.ts";
import { openDatabase } from "./client.ts";
import { rebuildProjections } from "./rebuild.ts";

const config = loadConfig(Deno.env.toObject());
const database = await openDatabase(config.DATABASE_URL, config.DATABASE_AUTH_TOKEN);
const started = performance.now();
const count = await rebuildProjections(database);
console.log(`rebuilt ${count} jobs in ${Math.round(performance.now() - started)} ms`);
database.close();
