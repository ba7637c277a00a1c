import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { performance } from "node:perf_hooks";

/** A server the bench started as a child process, listening on 127.0.0.1. */
export interface ChildServer {
  readonly base: string;
  readonly child: ChildProcess;
  /** From spawn to the first 200 of GET /ready, seconds. */
  readonly readySeconds: number;
}

export interface ChildSpec {
  readonly command: string;
  readonly args: readonly string[];
  readonly port: number;
  readonly cwd: string;
  /** stdout and stderr go here. */
  readonly logFile: string;
  readonly env?: Record<string, string>;
  readonly readyTimeoutMs: number;
  /** Answers 200 once the server serves; /ready unless given. */
  readonly readyPath?: string;
}

/** Starts a server and waits until its ready path answers 200; kills it and throws when it exits first or never gets there. */
export async function startChild(spec: ChildSpec): Promise<ChildServer> {
  mkdirSync(dirname(spec.logFile), { recursive: true });
  const fd = openSync(spec.logFile, "w");
  const started = performance.now();
  const child = spawn(spec.command, [...spec.args], { cwd: spec.cwd, stdio: ["ignore", fd, fd], env: { ...process.env, ...spec.env } });
  closeSync(fd);
  const base = `http://127.0.0.1:${spec.port}`;
  const deadline = Date.now() + spec.readyTimeoutMs;
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      if ((await fetch(`${base}${spec.readyPath ?? "/ready"}`)).status === 200) return { base, child, readySeconds: (performance.now() - started) / 1000 };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`${spec.command} ${spec.args.join(" ")}: ${child.exitCode === null ? "not ready in time" : `exited with ${child.exitCode}`}; see ${spec.logFile}`);
}

export async function stopChild(server: ChildServer): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = new Promise((r) => server.child.once("exit", r));
  server.child.kill("SIGTERM");
  const killer = setTimeout(() => server.child.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(killer);
}

/** Resident set size of a live process, bytes (VmRSS of /proc/<pid>/status; NaN where there is no /proc). */
export function rssBytes(pid: number | undefined): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}
