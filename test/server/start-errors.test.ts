import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t, { type Test } from "tap";
import { post, startServer, TINY_LIBRARY } from "./harness.js";

/**
 * A server that cannot start says why in one line on stderr and exits with a non-zero status:
 * a library.json with a misspelt key (served as an empty library before), one that is not JSON,
 * a port already taken. The real entry point runs in a child process, as users start it.
 */
const ROOT = join(import.meta.dirname, "..", "..");

async function startFails(t: Test, args: string[]): Promise<string> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", "--host", "127.0.0.1", "--threads", "1", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "pipe"],
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const [code] = await once(child, "exit");
  clearTimeout(timer);
  const lines = stderr.split("\n").filter((line) => line.trim() !== "");
  t.not(code, 0, `exit status ${code}`);
  t.equal(lines.length, 1, `one line on stderr:\n${stderr}`);
  t.notMatch(stderr, /^\s+at /m, "no stack trace");
  return lines[0] ?? "";
}

async function libraryWith(t: Test, manifest: string): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "manifest-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  await writeFile(join(root, "library.json"), manifest);
  return root;
}

t.test("a library.json with an unknown key is refused at start, the key named", async (t) => {
  const root = await libraryWith(t, JSON.stringify({ backbone: "backbone", adaptors: { a1: "1" } }, null, 2));
  const line = await startFails(t, ["--library", root, "--port", "0"]);
  t.match(line, /library\.json: unknown key 'adaptors'/, line);
});

t.test("a library.json that is not JSON is refused at start with the line and column", async (t) => {
  const root = await libraryWith(t, '{\n  "backbone": "backbone",\n  "adapters": { "a1": "1" }\n  "fusions": {}\n}\n');
  const line = await startFails(t, ["--library", root, "--port", "0"]);
  t.match(line, /library\.json: invalid JSON at line 4, column 3/, line);
});

t.test("a port already in use is one line, not a stack trace", async (t) => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise((resolve) => taken.close(resolve)));
  const { port } = taken.address() as { port: number };
  const line = await startFails(t, ["--library", TINY_LIBRARY, "--port", String(port)]);
  t.match(line, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: the port is already in use`), line);
});

t.test("an unknown field of a request body is named in the answer", async (t) => {
  const { url } = await startServer(t);
  const answer = await post(`${url}/v1/predict/a1`, { inputs: "x", explian: true });
  t.equal(answer.status, 400);
  t.equal(answer.body.error, "invalid_request");
  t.match(answer.body.message, /unknown field 'explian'/, answer.body.message);
});
