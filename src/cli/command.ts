import { parseArgs, type ParseArgsConfig } from "node:util";

/** A command line that cannot be acted on: exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Something the command tried and could not do (a refusal, an unreachable server): exit status 1. */
export class CommandFailed extends Error {
  override readonly name = "CommandFailed";
}

export interface Command {
  /** The subcommand's name, as typed after `fusion-serve`. */
  readonly name: string;
  /** One line for the list of commands. */
  readonly summary: string;
  /** Runs the command on the arguments after its name; resolves when it is done. */
  readonly run: (args: readonly string[]) => Promise<void>;
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * The flags and positionals of `args`, or a UsageError naming what is wrong. `--help` is
 * answered here: the usage is printed and the process exits 0.
 */
export function parseCommandLine<O extends Options>(args: readonly string[], options: O, usage: string, positionals: number) {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: { ...options, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if ((parsed.values as { help?: boolean }).help) {
    console.log(usage);
    process.exit(0);
  }
  if (parsed.positionals.length > positionals) {
    throw new UsageError(`unexpected argument '${parsed.positionals[positionals]}'`);
  }
  return parsed;
}

/** `--kind`: the two kinds of module, as the command line spells them and as the admin API's paths do. */
export const KINDS = { adapter: "adapters", fusion: "fusions" } as const;
export type Kind = keyof typeof KINDS;

export function kindFlag(raw: string | undefined): Kind | undefined {
  if (raw === undefined) return undefined;
  if (raw !== "adapter" && raw !== "fusion") throw new UsageError(`--kind must be adapter or fusion, not '${raw}'`);
  return raw;
}
