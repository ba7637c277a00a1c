import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import t from "tap";
import { post, request, TINY_LIBRARY } from "./harness.js";

const ROOT = join(import.meta.dirname, "..", "..");

t.test("SIGTERM: in-flight requests complete with 200, new ones are refused, the process exits 0", { timeout: 60_000 }, async (t) => {
  // Inputs wait 400 ms for company, so the burst is certainly still in flight when SIGTERM lands.
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "src/main.ts", "--library", TINY_LIBRARY, "--port", "0", "--threads", "1", "--max-wait-ms", "400", "--shutdown-timeout-ms", "10000"],
    { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] },
  );
  t.teardown(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  const exited = once(child, "exit");

  const logs: { msg: string; req?: { url: string } }[] = [];
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

  await logged(() => logs.some((l) => l.msg.startsWith("Server listening at")), "listening");
  const url = logs.find((l) => l.msg.startsWith("Server listening at"))!.msg.replace("Server listening at ", "");
  await logged(() => logs.some((l) => l.msg === "model library loaded"), "library loaded");
  t.equal((await request(`${url}/ready`)).status, 200);

  const burst = Array.from({ length: 12 }, (_, i) => post(`${url}/v1/predict/dyn5`, { inputs: [`in flight ${i}`] }));
  const received = () => logs.filter((l) => l.msg === "incoming request" && l.req?.url === "/v1/predict/dyn5").length;
  await logged(() => received() === burst.length, "every request received");
  child.kill("SIGTERM");
  await logged(() => logs.some((l) => l.msg === "shutting down: finishing in-flight requests"), "shutting down");

  const late = await post(`${url}/v1/predict/dyn5`, { inputs: "too late" }).then(
    (r) => `status ${r.status}`,
    (err: Error) => `connection refused (${(err.cause as Error | undefined)?.message ?? err.message})`,
  );
  t.match(late, /^(status 503|connection refused)/, `a request after SIGTERM is refused: ${late}`);

  const answers = await Promise.all(burst);
  t.same(
    answers.map((a) => a.status),
    burst.map(() => 200),
    "every in-flight request answered 200",
  );
  t.ok(answers.every((a) => a.body.predictions.length === 1));
  const [code, signal] = await exited;
  t.equal(signal, null);
  t.equal(code, 0, "exit status 0");
  t.ok(logs.some((l) => l.msg === "shut down"));
});
