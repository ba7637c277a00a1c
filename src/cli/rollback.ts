import { AdminClient, CONNECTION_OPTIONS, CONNECTION_USAGE, describeChange } from "./admin.js";
import { type Command, CommandFailed, type Kind, kindFlag, parseCommandLine, UsageError } from "./command.js";

const USAGE = `Usage: fusion-serve rollback NAME [--kind adapter|fusion] [--url URL] [--token TOKEN]

Returns adapter or fusion NAME of a running server to the version it had before its last change
(a push or a rollback: rolling back twice returns to where the first rollback started).

  --kind KIND    adapter or fusion; default: the kind of the one module named NAME
${CONNECTION_USAGE}`;

/** The kind of the module the server holds under `name`, asked of its listings. */
async function kindNamed(client: AdminClient, name: string): Promise<Kind> {
  const [adapters, fusions] = await Promise.all([client.list("adapter"), client.list("fusion")]);
  const adapter = adapters.some((m) => m.name === name);
  const fusion = fusions.some((m) => m.name === name);
  if (adapter && fusion) throw new UsageError(`the server holds both an adapter and a fusion named '${name}': say which with --kind`);
  if (!adapter && !fusion) throw new CommandFailed(`the server holds no adapter or fusion named '${name}'`);
  return adapter ? "adapter" : "fusion";
}

async function rollback(args: readonly string[]): Promise<void> {
  const { values, positionals } = parseCommandLine(args, { kind: { type: "string" }, ...CONNECTION_OPTIONS }, USAGE, 1);
  const name = positionals[0];
  if (name === undefined) throw new UsageError("NAME is missing: the adapter or fusion to roll back");
  const kind = kindFlag(values.kind);
  const client = new AdminClient(values);
  console.log(describeChange(await client.rollback(kind ?? (await kindNamed(client, name)), name)));
}

export const rollbackCommand: Command = { name: "rollback", summary: "return an adapter or fusion to its version before the last change", run: rollback };
