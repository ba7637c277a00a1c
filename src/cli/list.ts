import { AdminClient, CONNECTION_OPTIONS, CONNECTION_USAGE, type Listed } from "./admin.js";
import { type Command, parseCommandLine } from "./command.js";

const USAGE = `Usage: fusion-serve list [--json] [--url URL] [--token TOKEN]

The adapters and fusions a running server holds: the version and version folder live, the folder a
rollback returns to, the size, and the routes that use each.

  --json         print the admin API's answers as one JSON object {"adapters": [...], "fusions": [...]}
${CONNECTION_USAGE}`;

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

/** Rows under a header, each column as wide as its widest cell. */
function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]) => `  ${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join("  ")}`;
  return [line(header), ...rows.map(line)].join("\n");
}

function section(title: string, modules: readonly Listed[], fused: boolean): string {
  if (modules.length === 0) return `${title}: none`;
  const header = ["NAME", "VERSION", "FOLDER", "ROLLBACK TO", "SIZE", ...(fused ? ["ADAPTERS"] : []), "ROUTES"];
  const rows = modules.map((m) => [
    m.name,
    m.version,
    m.folder,
    m.previous_folder ?? "-",
    size(m.size_bytes),
    ...(fused ? [(m.adapters ?? []).join(",")] : []),
    m.routes.length > 0 ? m.routes.join(", ") : "-",
  ]);
  return `${title}\n${table(header, rows)}`;
}

async function list(args: readonly string[]): Promise<void> {
  const { values } = parseCommandLine(args, { json: { type: "boolean", default: false }, ...CONNECTION_OPTIONS }, USAGE, 0);
  const client = new AdminClient(values);
  const [adapters, fusions] = await Promise.all([client.list("adapter"), client.list("fusion")]);
  console.log(values.json ? JSON.stringify({ adapters, fusions }, null, 2) : `${section("adapters", adapters, false)}\n\n${section("fusions", fusions, true)}`);
}

export const listCommand: Command = { name: "list", summary: "the adapters and fusions a running server holds", run: list };
