/**
 * The package's own entry points (src/main.ts, src/export/cli.ts) read their flags from
 * process.argv, as `node dist/main.js` and `npm run export` give them, and run when imported.
 * A subcommand that runs one puts its own arguments in the command line's place first, so the
 * entry point parses, reports and exits exactly as it does when started on its own.
 */
export function handArgumentsTo(args: readonly string[]): void {
  process.argv = [process.argv[0], process.argv[1], ...args];
}
