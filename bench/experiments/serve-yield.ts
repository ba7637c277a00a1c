/**
 * Bench-only experiment (not the shipped server): src/main.ts with one change, to measure the
 * server change proposed in bench/README.md.
 *
 * onnxruntime-node 1.30's session.run is synchronous on the main thread (its promise only defers
 * the call with setImmediate), so the event loop is blocked for the whole forward pass. The
 * batcher's `finally { schedule() }` then runs before any request that arrived during the pass has
 * been read, finds a near-empty queue whose inputs already waited more than max-wait-ms, and
 * dispatches a tiny batch; the requests that piled up wait a whole further pass. Here every
 * engine.run resolves one event-loop turn later (after the I/O phase), so the requests that arrived
 * during the pass are parsed, tokenized and queued before the next batch is planned.
 *
 *   node --import tsx bench/experiments/serve-yield.ts <the server's flags>
 */
import { FusionEngine } from "../../src/engine/engine.js";

const run = FusionEngine.prototype.run;
FusionEngine.prototype.run = async function (this: FusionEngine, ...args: Parameters<typeof run>) {
  const result = await run.apply(this, args);
  await new Promise((resolve) => setImmediate(resolve));
  return result;
};

await import("../../src/main.js");
