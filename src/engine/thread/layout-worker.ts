import { parentPort, workerData } from "node:worker_threads";
import { performance } from "node:perf_hooks";
import { FusionFolder } from "../fold.js";
import { feedBuffers, quantizeRouteFeeds, routeFeeds } from "../layout.js";
import { collectGarbage } from "./collect.js";
import { LAYOUT_NICE, lowerThreadPriority } from "./priority.js";
import { toWire, type FromLayout, type LayoutJob, type LayoutWorkerSetup, type ToLayout } from "./protocol.js";

/**
 * Route assembly away from the event loop and from the engine: folding a fusion into its feeds
 * costs 2·d²·(K + N) per layer (fold.ts), and would otherwise stall either intake or every
 * forward pass for that long.
 */
const { role, backbone, int8, threads, hold } = workerData as LayoutWorkerSetup;
const port = parentPort!;
// Before the folder starts its pool threads, which inherit this priority.
lowerThreadPriority(LAYOUT_NICE[role]);
const folder = new FusionFolder(threads);

// One layout at a time, in arrival order: each already uses every core it is given.
let layouts = Promise.resolve();
let closing = false;
port.on("message", (message: ToLayout) => {
  if (message.type === "layout") {
    layouts = layouts.then(() => (closing ? port.postMessage({ job: message.job, error: toWire(new Error("the engine is closing")) } satisfies FromLayout) : layOut(message)));
    return;
  }
  // Layouts are built in the background, so one may be running when the engine closes: the thread
  // ends once it is done, rather than being terminated inside ONNX Runtime, which aborts the process.
  closing = true;
  layouts = layouts.then(async () => {
    await folder.close();
    port.close();
  });
});

async function layOut({ job, adapters, fusion }: LayoutJob): Promise<void> {
  if (hold) {
    Atomics.store(hold, 1, 1);
    Atomics.notify(hold, 1);
    Atomics.wait(hold, 0, 0);
  }
  const started = performance.now();
  try {
    const float = await routeFeeds(backbone, { adapters, fusion }, "fused", folder);
    const feeds = int8 ? quantizeRouteFeeds(float, backbone.numLayers, int8.weightMax) : float;
    const reply: FromLayout = { job, feeds, seconds: (performance.now() - started) / 1000 };
    port.postMessage(reply, feedBuffers(feeds));
    collectGarbage();
  } catch (err) {
    port.postMessage({ job, error: toWire(err) } satisfies FromLayout);
  }
}
