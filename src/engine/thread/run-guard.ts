const IDLE = 0;
const RUNNING = 1;
const ENDED = 2;
const END_POLL_MS = 5;

/**
 * A worker thread must not be ended while it is inside an ONNX Runtime call: terminating it then,
 * or exiting the process, aborts the whole process. The worker runs its ONNX Runtime calls through
 * `run`; the thread that owns it calls `end` before terminating it, which waits for the call in
 * progress and lets no other start. One word of shared memory, so either side sees the other's
 * state at once.
 */
export class RunGuard {
  constructor(readonly state: Int32Array<SharedArrayBuffer> = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT))) {}

  /** In the worker: `body` as one guarded call, refused once the thread is being ended. */
  async run<T>(body: () => Promise<T>): Promise<T> {
    if (Atomics.compareExchange(this.state, 0, IDLE, RUNNING) !== IDLE) throw new Error("the thread is being ended");
    try {
      return await body();
    } finally {
      Atomics.store(this.state, 0, IDLE);
    }
  }

  /** In the owner: resolves once no guarded call runs and none can start. */
  async end(): Promise<void> {
    // A guarded call is one product of fixed size, a fraction of a second: polled, not waited on.
    while (Atomics.compareExchange(this.state, 0, IDLE, ENDED) === RUNNING) await new Promise((resolve) => setTimeout(resolve, END_POLL_MS));
  }
}
