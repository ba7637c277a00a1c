import { parentPort, workerData } from "node:worker_threads";
import { FusionFolder } from "../../engine/fold.js";
import { inSharedMemory } from "../../engine/shared-memory.js";
import { collectGarbage } from "../../engine/thread/collect.js";
import { toWire } from "../../engine/thread/protocol.js";
import { RunGuard } from "../../engine/thread/run-guard.js";
import { forServing, loadAdapter, loadFusion } from "../adapterhub.js";
import type { ReadReply, ReadRequest, ReadWorkerSetup } from "../module-reader.js";

/**
 * Reads and validates AdapterHub save directories away from the event loop: a hostile or merely
 * large file costs this thread's time, never the time of the requests being served. Tensors are
 * written once, into shared memory, where the library and the engine's threads read them. The
 * thread's ONNX Runtime calls are guarded (run-guard.ts): the reader replaces a thread whose read
 * ran too long, and ends it when it closes.
 */
const { backbone, guard } = workerData as ReadWorkerSetup;
const port = parentPort!;
// A fusion's score matrix is formed as it is read (docs/design.md §2), on this thread alone: at the
// process's priority, the product should take one core from passes, not all of them.
const folder = new FusionFolder(1, new RunGuard(guard));

let reads = Promise.resolve();
port.on("message", (message: ReadRequest) => {
  reads = reads.then(() => read(message));
});

async function read({ job, kind, dir, name }: ReadRequest): Promise<void> {
  try {
    const module = inSharedMemory(kind === "adapters" ? await loadAdapter(dir, backbone, name) : forServing(await loadFusion(dir, backbone, name, folder)));
    port.postMessage({ job, module } satisfies ReadReply);
  } catch (err) {
    port.postMessage({ job, error: toWire(err) } satisfies ReadReply);
  }
  collectGarbage();
}
