import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { TOKEN } from "../admin/admin-library.js";

export const ROOT = join(import.meta.dirname, "..", "..");

/** No run of the command may take longer than this; it is killed then, and the test fails. */
const COMMAND_TIMEOUT_MS = 60_000;

export interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliOptions {
  /** Added to this process's environment, which already holds the admin token; undefined removes a variable. */
  readonly env?: Record<string, string | undefined>;
  /** The package whose command runs; default: this checkout. */
  readonly cwd?: string;
}

function environment(options: CliOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ADMIN_TOKEN: TOKEN, ...options.env };
  for (const [key, value] of Object.entries(env)) if (value === undefined) delete env[key];
  return env;
}

function command(args: readonly string[], options: CliOptions) {
  return spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: options.cwd ?? ROOT, env: environment(options), stdio: ["ignore", "pipe", "pipe"] });
}

/** `fusion-serve ARGS` in a child process, as users run it, to its end. */
export async function cli(args: readonly string[], options: CliOptions = {}): Promise<Run> {
  const child = command(args, options);
  const timer = setTimeout(() => child.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const [code] = await once(child, "exit");
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/**
 * `fusion-serve serve ARGS` in a child process, resolved once it has logged that the library is
 * loaded (or rejected with its stderr when it exits first); killed at the test's teardown.
 */
export async function serve(t: { teardown(fn: () => unknown): void }, args: readonly string[], options: CliOptions = {}) {
  const child = command(["serve", ...args], options);
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
  const started = (async () => {
    let url: string | undefined;
    for await (const line of createInterface({ input: child.stdout })) {
      const { msg } = JSON.parse(line) as { msg: string };
      if (msg.startsWith("Server listening at ")) url = msg.slice("Server listening at ".length);
      if (msg === "model library loaded" && url !== undefined) return url;
    }
    return undefined;
  })();
  const url = await Promise.race([started, exited.then(() => undefined)]);
  clearTimeout(timer);
  if (url === undefined) {
    await exited;
    throw new Error(`fusion-serve serve exited (status ${child.exitCode}) before serving:\n${stderr}`);
  }
  child.stdout.resume();
  return { child, url, exited, stderr: () => stderr };
}
