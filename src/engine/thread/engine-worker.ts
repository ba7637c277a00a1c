import { parentPort, workerData } from "node:worker_threads";
import { performance } from "node:perf_hooks";
import { loadBackbone } from "../backbone.js";
import { FusionEngine, type SlotFeeds } from "../engine.js";
import type { PredictionHead } from "../heads.js";
import type { RouteFeeds } from "../layout.js";
import { readoutPass, type SlotReadout } from "../readout.js";
import { collectGarbage } from "./collect.js";
import { ENGINE_NICE, lowerThreadPriority } from "./priority.js";
import { toWire, type EngineWorkerSetup, type FromEngine, type ToEngine, type WireBatch } from "./protocol.js";

/**
 * The engine's thread: the one ONNX Runtime session, the routes installed in it, and the heads.
 * Messages are handled in arrival order, so a route installed before a pass that names it is
 * always there; passes run one at a time, in the order they came.
 */
const setup = workerData as EngineWorkerSetup;
const port = parentPort!;
const post = (message: FromEngine) => port.postMessage(message);
const routes = new Map<number, { readonly feeds: RouteFeeds; readonly head: PredictionHead; readonly direct: boolean }>();

/**
 * The engine runs 10 nice levels below the process: on a machine where a pass keeps every core
 * busy, the event loop then gets the CPU as soon as it has a request to answer, and the pass runs
 * on whatever is left. The session's pool threads inherit it, and at this priority they can keep
 * spinning between parallel sections (ONNX Runtime's default): on 2 cores with 64 clients,
 * turning spinning off cost 11–13 % of the throughput and did not shorten /health.
 */
lowerThreadPriority(ENGINE_NICE);
try {
  const engine = await FusionEngine.create(await loadBackbone(setup.backboneDir), {
    device: setup.device,
    precision: setup.precision,
    int8Weights: setup.int8Weights,
    threads: setup.threads,
    variant: "fused",
    slots: setup.slots,
    directSlots: setup.directSlots,
    // Takes padded batches as they are, and packed ones (packing.ts) from the scheduler.
    packed: true,
  });
  // The backbone's tensors and the serialized graph are ONNX Runtime's now: collected at once, so
  // the thread does not hold a second copy of the backbone until its heap happens to fill.
  collectGarbage();
  const d = engine.config.hiddenSize;
  // The scheduler may hand over a pass while another runs: each starts, and is timed, once the one
  // before it has been answered. Its routes are looked up when it arrives, so a route released
  // meanwhile (its last request timed out) stays with the passes already handed over.
  let passes = Promise.resolve();
  port.on("message", (message: ToEngine) => {
    if (message.type === "install") routes.set(message.route, { feeds: message.feeds, head: message.head, direct: false });
    // Copies the adapters side by side (layout.ts, directFeeds): no product, a fraction of a pass.
    else if (message.type === "install_direct") routes.set(message.route, { feeds: engine.directFeeds(message.modules), head: message.head, direct: true });
    else if (message.type === "release") {
      // A layout's buffers are large and few: returned at once. A route's unfolded feeds come and
      // go with its requests, and a full collection for each would cost more than a pass.
      const direct = routes.get(message.route)?.direct;
      routes.delete(message.route);
      if (!direct) collectGarbage();
    } else {
      const { pass, slots } = message;
      const missing = slots.find((slot) => !routes.has(slot.route));
      if (missing) post({ type: "pass_failed", pass, error: toWire(new Error(`route ${missing.route} is not installed in the engine`)) });
      else {
        const installed = slots.map((slot) => ({ ...routes.get(slot.route)!, inputs: slot.inputs, explain: slot.explain }));
        passes = passes.then(() => run(pass, message.batch, installed));
      }
    }
  });

  async function run(pass: number, wire: WireBatch, installed: readonly (SlotReadout & SlotFeeds)[]): Promise<void> {
    const started = performance.now();
    try {
      const batch = { ...wire, rows: wire.ids.length / wire.seqLen };
      const result = await engine.runPass(batch, installed);
      const outputs = readoutPass(result, batch, installed, d);
      post({ type: "done", pass, outputs, seconds: (performance.now() - started) / 1000 });
    } catch (err) {
      post({ type: "pass_failed", pass, error: toWire(err) });
    }
  }
  post({ type: "ready", backbone: engine.config, int8: engine.int8, backboneBytes: engine.graphBytes });
} catch (err) {
  post({ type: "failed", error: toWire(err) });
}
