import { parentPort, workerData } from "node:worker_threads";
import type { BackboneConfig } from "../../engine/backbone.js";
import { inSharedMemory } from "../../engine/shared-memory.js";
import { collectGarbage } from "../../engine/thread/collect.js";
import { toWire } from "../../engine/thread/protocol.js";
import { loadAdapter, loadFusion } from "../adapterhub.js";
import type { ReadReply, ReadRequest } from "../module-reader.js";

/**
 * Reads and validates AdapterHub save directories away from the event loop: a hostile or merely
 * large file costs this thread's time, never the time of the requests being served. Tensors are
 * written once, into shared memory, where the library and the engine's threads read them.
 */
const { backbone } = workerData as { backbone: BackboneConfig };
const port = parentPort!;

let reads = Promise.resolve();
port.on("message", (message: ReadRequest) => {
  reads = reads.then(() => read(message));
});

async function read({ job, kind, dir, name }: ReadRequest): Promise<void> {
  try {
    const module = inSharedMemory(kind === "adapters" ? await loadAdapter(dir, backbone, name) : await loadFusion(dir, backbone, name));
    port.postMessage({ job, module } satisfies ReadReply);
  } catch (err) {
    port.postMessage({ job, error: toWire(err) } satisfies ReadReply);
  }
  collectGarbage();
}
