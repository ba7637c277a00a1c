import type { Worker } from "node:worker_threads";
import type { BackboneConfig } from "../engine/backbone.js";
import { fromWire, type WireError } from "../engine/thread/protocol.js";
import { RunGuard } from "../engine/thread/run-guard.js";
import { startWorker } from "../engine/thread/start.js";
import { ModelLoadError } from "../errors.js";
import type { AdapterModule, FusionModule } from "./adapterhub.js";
import type { ModuleKind } from "./store.js";

export interface ReadRequest {
  readonly job: number;
  readonly kind: ModuleKind;
  readonly dir: string;
  /** The name the module is served under. */
  readonly name: string;
}

export interface ReadWorkerSetup {
  readonly backbone: BackboneConfig;
  /** The thread's RunGuard state: it is terminated only between its ONNX Runtime calls. */
  readonly guard: Int32Array<SharedArrayBuffer>;
}

export type ReadReply = { readonly job: number; readonly module: AdapterModule | FusionModule } | { readonly job: number; readonly error: WireError };

/** Heap of the reading thread; tensors live outside it, in shared memory. */
const READ_HEAP_MB = 1024;

/** How long reading one module may take before it is refused: far beyond any real save directory's. */
export const READ_BUDGET_MS = 60_000;

/**
 * Reads modules in a thread of their own (thread/read-worker.ts), one at a time, each within a
 * wall-clock budget: a read that outlasts it is refused (422 too_costly) and the thread replaced,
 * so no file, however crafted, holds the library's changes or the event loop.
 */
export class ModuleReader {
  private worker: { readonly thread: Worker; readonly guard: RunGuard } | undefined;
  private readonly jobs = new Map<number, { resolve: (reply: ReadReply) => void; reject: (err: Error) => void }>();
  private nextJob = 1;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly backbone: BackboneConfig,
    private readonly budgetMs = READ_BUDGET_MS,
  ) {}

  adapter(dir: string, name: string): Promise<AdapterModule> {
    return this.read("adapters", dir, name) as Promise<AdapterModule>;
  }

  fusion(dir: string, name: string): Promise<FusionModule> {
    return this.read("fusions", dir, name) as Promise<FusionModule>;
  }

  private read(kind: ModuleKind, dir: string, name: string): Promise<AdapterModule | FusionModule> {
    // One read at a time, so each budget counts its own read only.
    const result = this.queue.then(() => this.readNow(kind, dir, name));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Ends the thread, once the ONNX Runtime call it may be in is done; reads after this start a new one. */
  async close(): Promise<void> {
    await this.replaceThread();
  }

  private async readNow(kind: ModuleKind, dir: string, name: string): Promise<AdapterModule | FusionModule> {
    const worker = this.thread();
    const job = this.nextJob++;
    let timer: NodeJS.Timeout | undefined;
    try {
      const reply = await new Promise<ReadReply>((resolve, reject) => {
        this.jobs.set(job, { resolve, reject });
        timer = setTimeout(() => {
          reject(new ModelLoadError("too_costly", `${dir}: reading the ${kind === "adapters" ? "adapter" : "fusion"} took longer than ${this.budgetMs / 1000} s; refused`));
          void this.replaceThread();
        }, this.budgetMs);
        worker.postMessage({ job, kind, dir, name } satisfies ReadRequest);
      });
      if ("error" in reply) throw fromWire(reply.error);
      return reply.module;
    } finally {
      clearTimeout(timer);
      this.jobs.delete(job);
    }
  }

  private thread(): Worker {
    if (this.worker) return this.worker.thread;
    const guard = new RunGuard();
    // A file that makes its reader build more objects than any real one would ends that thread, not the process.
    const setup: ReadWorkerSetup = { backbone: this.backbone, guard: guard.state };
    const worker = startWorker(new URL("./thread/read-worker.js", import.meta.url), setup, { resourceLimits: { maxOldGenerationSizeMb: READ_HEAP_MB } });
    const current = () => this.worker?.thread === worker;
    worker.on("message", (reply: ReadReply) => this.jobs.get(reply.job)?.resolve(reply));
    // A thread replaced after a timeout has no jobs left: only the current one's failure fails its jobs.
    worker.on("error", (err: NodeJS.ErrnoException) => {
      if (!current()) return;
      this.failAll(err.code === "ERR_WORKER_OUT_OF_MEMORY" ? new ModelLoadError("too_costly", `reading the module took more than ${READ_HEAP_MB} MiB of objects; refused`) : err);
    });
    worker.on("exit", (code) => {
      if (!current()) return;
      this.worker = undefined;
      this.failAll(new Error(`the module reader's thread exited (code ${code})`));
    });
    // An idle reader never keeps the process alive (after the listeners: adding one refs the thread again).
    worker.unref();
    this.worker = { thread: worker, guard };
    return worker;
  }

  private async replaceThread(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (!worker) return;
    await worker.guard.end();
    await worker.thread.terminate();
  }

  private failAll(err: Error): void {
    for (const { reject } of this.jobs.values()) reject(err);
    this.jobs.clear();
  }
}
