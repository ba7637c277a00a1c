import type { Command } from "./command.js";
import { handArgumentsTo } from "./entry.js";

async function exportRoute(args: readonly string[]): Promise<void> {
  handArgumentsTo(args);
  await import("../export/cli.js");
}

export const exportCommand: Command = { name: "export", summary: "write a route as a standalone ONNX model (fusion-serve export --help)", run: exportRoute };
