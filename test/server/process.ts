import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Test } from "tap";
import { TINY_LIBRARY } from "./harness.js";

const ROOT = join(import.meta.dirname, "..", "..");

export interface LogLine {
  msg: string;
  req?: { url: string };
}

/** The real entry point in a child process, as users start it, with its log lines as they come. */
export async function serverProcess(t: Test, args: string[]) {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", "--library", TINY_LIBRARY, "--port", "0", "--threads", "1", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  const logs: LogLine[] = [];
  const waiters: { test: () => boolean; resolve: () => void }[] = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    logs.push(JSON.parse(line));
    for (const w of waiters.splice(0)) (w.test() ? w.resolve : () => waiters.push(w))();
  });
  const logged = (test: () => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      if (test()) return resolve();
      const timer = setTimeout(() => reject(new Error(`timed out waiting for the server to log: ${what}`)), 20_000);
      waiters.push({ test, resolve: () => (clearTimeout(timer), resolve()) });
    });
  const loggedMessage = (msg: string) => logged(() => logs.some((l) => l.msg === msg), msg);

  await logged(() => logs.some((l) => l.msg.startsWith("Server listening at")), "listening");
  const url = logs.find((l) => l.msg.startsWith("Server listening at"))!.msg.replace("Server listening at ", "");
  await loggedMessage("model library loaded");
  const received = (path: string) => logs.filter((l) => l.msg === "incoming request" && l.req?.url === path).length;
  return { child, exited, logs, logged, loggedMessage, received, url };
}

