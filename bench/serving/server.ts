import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";

/** A server the benchmark started as a child process, and the base URL it answers on. */
export interface BenchServer {
  readonly base: string;
  readonly child: ChildProcess;
}

let nextPort = 18000 + Math.floor(Math.random() * 2000);

/**
 * Starts `command args…` with its output in `logFile`, passing it `--port`, and waits until
 * `readyPath` answers 200. A server that exits or is not ready within `timeoutMs` is an error
 * naming the log.
 */
export async function startChild(
  command: string,
  args: readonly string[],
  opts: { cwd: string; logFile: string; readyPath: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<BenchServer> {
  const port = nextPort++;
  mkdirSync(dirname(opts.logFile), { recursive: true });
  const fd = openSync(opts.logFile, "w");
  const child = spawn(command, [...args, "--port", String(port)], { cwd: opts.cwd, stdio: ["ignore", fd, fd], env: opts.env ?? process.env });
  closeSync(fd);
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      if ((await fetch(`${base}${opts.readyPath}`)).status === 200) return { base, child };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  child.kill("SIGKILL");
  throw new Error(`${command} did not become ready; see ${opts.logFile}`);
}

export async function stopChild(server: BenchServer): Promise<void> {
  if (server.child.exitCode !== null) return;
  const exited = new Promise((r) => server.child.once("exit", r));
  server.child.kill("SIGTERM");
  await exited;
}
