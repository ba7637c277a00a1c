import { openAsBlob } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { AdminClient, CONNECTION_OPTIONS, CONNECTION_USAGE, describeChange } from "./admin.js";
import { type Command, type Kind, kindFlag, parseCommandLine, UsageError } from "./command.js";

const USAGE = `Usage: fusion-serve push DIR --name NAME [--kind adapter|fusion] [--url URL] [--token TOKEN]

Loads DIR, a folder written by the adapters library, into a running server through its admin API:
model.save_adapter(DIR, name) (with its head, so that NAME is served as a route of its own), or
model.save_adapter_fusion(DIR, names) with its head (the fused adapters must be in the library,
under the names the fusion lists). Every file directly in DIR is sent; the server loads and checks
the module completely before serving it, and a refusal, printed with its code, changes nothing.
A NAME already served is replaced: \`fusion-serve rollback NAME\` returns to what it was.

  --name NAME    the name to serve it under: letters, digits, '.', '_', '-' (at most 64)
  --kind KIND    adapter or fusion; default: fusion when DIR holds adapter_fusion_config.json,
                 adapter when it holds adapter_config.json
${CONNECTION_USAGE}`;

/** The kind a save directory's config file says it is, as save_adapter and save_adapter_fusion name them. */
function kindOf(dir: string, files: readonly string[]): Kind {
  const adapter = files.includes("adapter_config.json");
  const fusion = files.includes("adapter_fusion_config.json");
  if (adapter !== fusion) return fusion ? "fusion" : "adapter";
  throw new UsageError(
    adapter
      ? `${dir} holds both adapter_config.json and adapter_fusion_config.json: say which to push with --kind`
      : `${dir} holds neither adapter_config.json (save_adapter) nor adapter_fusion_config.json (save_adapter_fusion); pass --kind to send it anyway`,
  );
}

async function push(args: readonly string[]): Promise<void> {
  const { values, positionals } = parseCommandLine(args, { name: { type: "string" }, kind: { type: "string" }, ...CONNECTION_OPTIONS }, USAGE, 1);
  const dir = positionals[0];
  if (dir === undefined) throw new UsageError("the save directory DIR is missing");
  if (values.name === undefined) throw new UsageError("--name is missing: the name to serve the module under");
  const client = new AdminClient(values);
  if (!(await stat(dir).catch(() => undefined))?.isDirectory()) throw new UsageError(`${dir} is not a folder`);
  // Subfolders are no part of a save directory (a PUT by path skips them too).
  const files = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  const kind = kindFlag(values.kind) ?? kindOf(dir, files);
  const form = new FormData();
  // Streamed from disk as the body is sent: weights are not read into memory first.
  for (const file of files) form.append(file, await openAsBlob(join(dir, file)), file);
  console.log(describeChange(await client.put(kind, values.name, form)));
}

export const pushCommand: Command = { name: "push", summary: "load an adapters save directory into a running server", run: push };
