/**
 * `./trainer <command>`: the command-line client of a trainer server (TRAINER_URL, with
 * TRAINER_TOKEN as its bearer token). Exit codes: 0 done (a watched job completed), 1 a
 * watched job failed, 2 it was cancelled, 3 the command itself failed.
 */
import { Command, CommanderError, Option } from "commander";
import { Api, CliError, configFromEnv, EXIT } from "./api.ts";
import { cancel, jobs, logs, models, type Output, status, train } from "./commands.ts";
import { HttpError } from "./sse.ts";
import { watch } from "./watch.ts";

const JSON_HELP = "machine output: JSON (one object per line for streams)";

function output(opts: { json?: boolean }): Output {
  return { json: !!opts.json, tty: Deno.stdout.isTerminal() };
}

/** Builds the program; `run` receives each command's exit code. */
export function program(api: () => Api, run: (code: Promise<number | void>) => void): Command {
  const p = new Command("trainer")
    .description("Client of the trainer API (TRAINER_URL, TRAINER_TOKEN)")
    .addHelpText(
      "after",
      "\nNot the client (./trainer <command> --help says more):\n" +
        "  serve    run the API server here, training its jobs itself\n" +
        "  worker   train jobs for a hosted API (WORKERS=remote) on this machine\n" +
        "  test     run the test suite; bench, drill: benchmarks and drills; ok: checks, then tests\n" +
        "  setup    install what is missing (Deno, the Python packages)",
    )
    .showHelpAfterError()
    .exitOverride();
  p.command("train")
    .description("start training a model type, or all of them")
    .argument("<type>", "a model type (xgboost, random-forest, neural-net, ...) or all")
    .option("--retrain", "train even when a model of this type exists")
    .option("--no-cv", "skip cross-validation")
    .option("--set <key=value>", "hyperparameter override (repeatable)", collect, [])
    .option("--timeout <seconds>", "stop the job after this many seconds")
    .option("--watch", "follow the job to its end; the exit code tells how it ended")
    .option("--json", JSON_HELP)
    .action((type, o) => run(train(api(), type, o, output(o))));
  p.command("status")
    .description("show a job's status")
    .argument("<job_id>")
    .option("--json", JSON_HELP)
    .action((id, o) => run(status(api(), id, output(o))));
  p.command("watch")
    .description(
      "live progress of a job (bars on a terminal); exit 0/1/2: completed/failed/cancelled",
    )
    .argument("<job_id>")
    .option("--json", JSON_HELP)
    .action((id, o) => {
      const out = output(o);
      run(watch(api(), id, out.json ? "json" : out.tty ? "bars" : "lines"));
    });
  p.command("logs")
    .description("print a job's log; --follow keeps printing until the job ends")
    .argument("<job_id>")
    .option("-f, --follow", "follow new lines until the job ends")
    .option("--json", JSON_HELP)
    .action((id, o) => run(logs(api(), id, !!o.follow, output(o))));
  p.command("cancel")
    .description("cancel a job")
    .argument("<job_id>")
    .option("--json", JSON_HELP)
    .action((id, o) => run(cancel(api(), id, output(o))));
  p.command("jobs")
    .description("list jobs, newest first")
    .addOption(
      new Option("--status <status>", "only jobs in this status")
        .choices(["started", "running", "completed", "failed", "cancelled"]),
    )
    .option("--type <type>", "only jobs of this model type")
    .option("--limit <n>", "at most n jobs (default 50)")
    .option("--json", JSON_HELP)
    .action((o) => run(jobs(api(), o, output(o))));
  p.command("models")
    .description("list models with their status (ok, missing...)")
    .option("--json", JSON_HELP)
    .action((o) => run(models(api(), output(o))));
  return p;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Runs the client with `args`; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  let pending: Promise<number | void> | null = null;
  const api = () => new Api(configFromEnv(Deno.env.toObject()));
  try {
    await program(api, (code) => pending = code).parseAsync(args, { from: "user" });
    return (await pending) ?? EXIT.completed;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? EXIT.completed : EXIT.error;
    }
    if (e instanceof CliError || e instanceof HttpError) {
      console.error(`trainer: ${e.message}`);
    } else {
      console.error(`trainer: ${e instanceof Error ? e.message : String(e)}`);
    }
    return EXIT.error;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
