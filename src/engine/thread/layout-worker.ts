import { parentPort, workerData } from "node:worker_threads";
import { performance } from "node:perf_hooks";
import { feedBuffers, FoldCache, quantizeRouteFeeds, routeFeeds } from "../layout.js";
import { collectGarbage } from "./collect.js";
import { LAYOUT_NICE, lowerThreadPriority } from "./priority.js";
import { toWire, type FromLayout, type LayoutWorkerSetup, type ToLayout } from "./protocol.js";

/**
 * Route assembly away from the event loop and from the engine: folding a fusion into its feeds
 * costs d³ per layer, seconds on a larger backbone, and would otherwise stall either intake or
 * every forward pass for that long.
 */
const { backbone, int8, hold } = workerData as LayoutWorkerSetup;
const port = parentPort!;
const folds = new FoldCache();
lowerThreadPriority(LAYOUT_NICE);

port.on("message", ({ job, adapters, fusion }: ToLayout) => {
  if (hold) {
    Atomics.store(hold, 1, 1);
    Atomics.notify(hold, 1);
    Atomics.wait(hold, 0, 0);
  }
  const started = performance.now();
  try {
    const float = routeFeeds(backbone, { adapters, fusion }, "fused", folds);
    const feeds = int8 ? quantizeRouteFeeds(float, backbone.numLayers, int8.weightMax) : float;
    const reply: FromLayout = { job, feeds, seconds: (performance.now() - started) / 1000 };
    port.postMessage(reply, feedBuffers(feeds));
    collectGarbage();
  } catch (err) {
    port.postMessage({ job, error: toWire(err) } satisfies FromLayout);
  }
});
