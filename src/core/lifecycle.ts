import { UnavailableError } from "../errors.js";
import type { Scheduler } from "../scheduler/scheduler.js";
import type { ModelRuntime } from "./runtime.js";

export type ServingPhase = "loading" | "ready" | "draining" | "stopping";

/** A loaded runtime and the scheduler that feeds its engine: what a prediction runs on. */
export interface Live {
  readonly runtime: ModelRuntime;
  readonly scheduler: Scheduler;
}

/**
 * The server's lifecycle: it listens while the library loads ("loading"), serves once a runtime is
 * attached ("ready"), and reports 503 on /ready from the moment shutdown begins, so a load balancer
 * sends traffic only in between. "draining" refuses nothing: load balancers and Kubernetes'
 * endpoints take a while to notice, and whatever they still send, on old or new connections, is
 * served. "stopping" follows once the listener stops accepting connections: every request already
 * received (even one whose body is still arriving) is answered, later ones on open keep-alive
 * connections get 503 shutting_down.
 */
export class Serving {
  private current: Live | undefined;
  private state: ServingPhase = "loading";

  constructor(
    /** Where the library is, for the message of a request that arrives while it loads. */
    private readonly libraryLocation: string,
    private readonly makeScheduler: (runtime: ModelRuntime) => Scheduler,
  ) {}

  get phase(): ServingPhase {
    return this.state;
  }

  get runtime(): ModelRuntime | undefined {
    return this.current?.runtime;
  }

  get queueDepth(): number {
    return this.current?.scheduler.depth ?? 0;
  }

  attach(runtime: ModelRuntime): void {
    this.current = { runtime, scheduler: this.makeScheduler(runtime) };
    if (this.state === "loading") this.state = "ready";
  }

  /** The runtime and scheduler, or unavailable (not_ready) while the library loads. */
  require(): Live {
    if (!this.current) throw new UnavailableError("not_ready", `the model library (${this.libraryLocation}) is still loading`);
    return this.current;
  }

  /** /ready answers 503; everything else is still served. */
  drain(): void {
    if (this.state !== "stopping") this.state = "draining";
  }

  /** Requests that arrive from now on are refused with shutting_down (the probes excepted). */
  stop(): void {
    this.state = "stopping";
  }

  async close(): Promise<void> {
    this.stop();
    await this.current?.runtime.close();
    await this.current?.runtime.engine.close();
  }
}
