#!/usr/bin/env node
import { CONNECTION_USAGE } from "./admin.js";
import { type Command, CommandFailed, UsageError } from "./command.js";
import { exportCommand } from "./export.js";
import { listCommand } from "./list.js";
import { pushCommand } from "./push.js";
import { rollbackCommand } from "./rollback.js";
import { serveCommand } from "./serve.js";

const COMMANDS: readonly Command[] = [serveCommand, pushCommand, listCommand, rollbackCommand, exportCommand];

const USAGE = `Usage: fusion-serve <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(10)}${c.summary}`).join("\n")}

push, list and rollback talk to a running server's admin API:
${CONNECTION_USAGE}

fusion-serve <command> --help describes each command; fusion-serve --version prints the version.`;

const [name, ...args] = process.argv.slice(2);
if (name === undefined || name === "--help" || name === "-h") {
  (name === undefined ? console.error : console.log)(USAGE);
  process.exit(name === undefined ? 2 : 0);
}
// The server's own answer: name, version and, where it is known, the commit.
if (name === "--version") await serveCommand.run(["--version"]);
const command = COMMANDS.find((c) => c.name === name);
if (command === undefined) {
  console.error(`fusion-serve: unknown command '${name}' (commands: ${COMMANDS.map((c) => c.name).join(", ")})\n\n${USAGE}`);
  process.exit(2);
}
try {
  await command.run(args);
} catch (err) {
  if (err instanceof UsageError) {
    console.error(`fusion-serve ${command.name}: ${err.message}\nfusion-serve ${command.name} --help describes its usage.`);
    process.exit(2);
  }
  if (err instanceof CommandFailed) {
    console.error(`fusion-serve ${command.name}: ${err.message}`);
    process.exit(1);
  }
  throw err;
}
