import t from "tap";
import { once } from "node:events";
import { RunGuard } from "../../src/engine/thread/run-guard.js";
import { startWorker } from "../../src/engine/thread/start.js";

t.test("end waits for the guarded call in progress, and no call starts after it", async (t) => {
  const guard = new RunGuard();
  let finish!: () => void;
  const call = guard.run(() => new Promise<string>((resolve) => (finish = () => resolve("done"))));
  let ended = false;
  const ending = guard.end().then(() => (ended = true));
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.notOk(ended, "not ended while the call runs");
  finish();
  t.equal(await call, "done");
  await ending;
  t.ok(ended, "ended once the call returned");
  await t.rejects(guard.run(async () => "late"), /being ended/, "a call after end is refused");
});

t.test("a thread in the middle of ONNX Runtime products is terminated without aborting the process", async (t) => {
  // Terminating it inside a product, unguarded, aborts this very process (and so fails this file).
  const guard = new RunGuard();
  const worker = startWorker(new URL("../fixtures/products-worker.js", import.meta.url), { guard: guard.state, d: 512, layers: 32 });
  const [first] = (await once(worker, "message")) as [string];
  t.equal(first, "running");
  // Well into its next product, which takes far longer than the JavaScript around it.
  await new Promise((resolve) => setTimeout(resolve, 50));
  await guard.end();
  t.equal(await worker.terminate(), 1, "terminated");
});
