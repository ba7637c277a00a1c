import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

/** The Python executable for the bench's Python side: $PYTHON, else .venv/bin/python, else python3. */
export function resolvePython(root: string): string {
  if (process.env.PYTHON) return process.env.PYTHON;
  const venv = join(root, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

export interface PythonRun {
  readonly ok: boolean;
  readonly code: number | null;
  readonly stdout: string;
  /** The last lines of stderr (or the spawn error), for the report when the run failed. */
  readonly errorTail: string;
}

/** Runs a Python script, echoing its stdout lines through `log`. */
export function runPython(python: string, args: readonly string[], cwd: string, log: (line: string) => void): Promise<PythonRun> {
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    const child = spawn(python, args, { cwd, env: { ...process.env, PYTHONWARNINGS: "ignore" }, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      for (const line of chunk.split("\n")) if (line.trim()) log(`  ${line}`);
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", (err) => resolve({ ok: false, code: null, stdout, errorTail: String(err) }));
    child.on("close", (code) => {
      const tail = stderr.trim().split("\n").slice(-6).join("\n");
      resolve({ ok: code === 0, code, stdout, errorTail: tail });
    });
  });
}
