import { performance } from "node:perf_hooks";
import type { PassOutcome, PassSlot, RouteForm } from "../engine/engine-thread.js";
import { packBatch, padBatch, type TokenBatch } from "../engine/packing.js";
import type { InputReadout } from "../engine/readout.js";
import { OverloadedError, TimeoutError } from "../errors.js";
import type { FusionRoute } from "../library/route.js";
import { planPass, type SchedulingPolicy } from "./plan.js";

export interface SchedulerOptions {
  /** Tokens one forward pass computes, padding included: rows × longest input. */
  readonly maxBatchTokens: number;
  readonly maxBatchSize: number;
  readonly maxWaitMs: number;
  /** Inputs waiting across all routes. */
  readonly maxQueue: number;
  readonly requestTimeoutMs: number;
  readonly scheduling: SchedulingPolicy;
}

/** What the scheduler needs of the engine; EngineThread is one. */
export interface PassEngine {
  /** Routes one pass can serve from their resident layouts. */
  readonly slots: number;
  /** Routes one pass can serve unfolded, their layouts not resident. */
  readonly directSlots: number;
  run(batch: TokenBatch, slots: readonly PassSlot<FusionRoute>[]): Promise<PassOutcome>;
  /** Keeps a route installed while a request admitted on it is pending. */
  acquire(route: FusionRoute): void;
  /** How the next pass would serve an acquired route. */
  formOf(route: FusionRoute): RouteForm;
  release(route: FusionRoute): void;
}

export interface PassStats {
  /** Inputs of the pass, all routes together (several may share a row). */
  readonly inputs: number;
  /** Real length of each input, in tokens. */
  readonly lengths: readonly number[];
  /** Per route name: its inputs in this pass and their real tokens. */
  readonly routes: ReadonlyMap<string, { readonly inputs: number; readonly tokens: number }>;
  /** Real tokens, and tokens computed (padding included). */
  readonly realTokens: number;
  readonly computedTokens: number;
  readonly seconds: number;
}

/** The pass that delivered a request's last answer. */
export interface AnsweringPass {
  /** performance.now() when it was handed to the engine thread. */
  readonly started: number;
  /** Forward pass and heads, as the engine thread measured them. */
  readonly seconds: number;
}

/** Where the scheduler reports what it did; the metrics plugin is one. */
export interface SchedulerObserver {
  queueWait(route: string, seconds: number): void;
  pass(stats: PassStats): void;
}

/** The running pass and one more, planned ahead. */
const MAX_IN_FLIGHT = 2;

interface PendingRequest {
  readonly route: FusionRoute;
  readonly explain: boolean;
  readonly results: InputReadout[];
  remaining: number;
  settled: boolean;
  readonly onAnswer: ((pass: AnsweringPass) => void) | undefined;
  readonly resolve: (results: InputReadout[]) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

interface QueuedInput {
  readonly request: PendingRequest;
  readonly route: FusionRoute;
  readonly index: number;
  readonly ids: readonly number[];
  readonly length: number;
  readonly enqueuedAt: number;
}

/**
 * Coalesces the inputs of concurrent requests, of any routes, into shared forward passes.
 *
 * Passes run one at a time (the engine uses every core for each) in the engine's own thread, so
 * while one runs the event loop keeps admitting requests, and when it ends the next pass is planned
 * at once from everything waiting (plan.ts): continuous batching. When the engine is idle, an
 * input starts a pass at once, within submit(), unless maxWaitMs (0 by default) asks it to wait
 * that long for company: with nothing running, waiting can only add latency. While one pass runs, a second is handed to the engine only when it
 * is as full as it gets (a limit stopped it), that is under saturation: the engine then starts it
 * the moment the first ends, instead of idling while the answer crosses to the event loop and the
 * next plan crosses back (7 % of the engine's time at 64 clients on 2 cores). Below saturation,
 * inputs keep joining the next pass until the running one ends.
 *
 * Each input carries the FusionRoute snapshot its request was admitted with, and inputs of one
 * snapshot share a slot of the pass: a request is answered entirely by the version it started
 * on, even when the library swaps that route meanwhile.
 */
export class Scheduler {
  private queue: QueuedInput[] = [];
  /** Passes handed to the engine and not yet answered: at most MAX_IN_FLIGHT. */
  private inFlight = 0;
  private waitTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly engine: PassEngine,
    private readonly options: SchedulerOptions,
    private readonly observer: SchedulerObserver,
  ) {}

  /** Inputs waiting for a forward pass, all routes together. */
  get depth(): number {
    return this.queue.length;
  }

  /**
   * Resolves with one readout per sequence, in order; rejects with a ServingError. `onAnswer`
   * hears, just before it resolves, of the pass that delivered its last readout.
   */
  submit(route: FusionRoute, sequences: readonly (readonly number[])[], explain: boolean, onAnswer?: (pass: AnsweringPass) => void): Promise<InputReadout[]> {
    if (this.depth + sequences.length > this.options.maxQueue) {
      return Promise.reject(
        new OverloadedError(`the queue is full (${this.depth} of ${this.options.maxQueue} inputs waiting); retry later`, 1),
      );
    }
    this.engine.acquire(route);
    return new Promise<InputReadout[]>((resolve, reject) => {
      const request: PendingRequest = {
        route,
        explain,
        results: new Array(sequences.length),
        remaining: sequences.length,
        settled: false,
        onAnswer,
        resolve,
        reject,
        timer: setTimeout(() => this.expire(request), this.options.requestTimeoutMs),
      };
      const now = performance.now();
      sequences.forEach((ids, index) => this.queue.push({ request, route, index, ids, length: ids.length, enqueuedAt: now }));
      this.schedule();
    });
  }

  private expire(request: PendingRequest): void {
    this.fail(request, new TimeoutError(`no answer within ${this.options.requestTimeoutMs} ms; the server is busy, retry later`));
  }

  private schedule(): void {
    if (this.inFlight >= MAX_IN_FLIGHT || this.queue.length === 0) return;
    clearTimeout(this.waitTimer);
    this.waitTimer = undefined;
    const limits = { ...this.options, slots: this.engine.slots, directSlots: this.engine.directSlots };
    const plan = planPass(this.queue, limits, this.options.scheduling, (route) => this.engine.formOf(route) === "folded");
    const waited = performance.now() - this.queue[0].enqueuedAt;
    const ready = plan.full || (this.inFlight === 0 && waited >= this.options.maxWaitMs);
    if (ready) {
      const picked = new Set(plan.picked);
      const inputs = plan.picked.map((i) => this.queue[i]);
      this.queue = this.queue.filter((_, i) => !picked.has(i));
      void this.dispatch(inputs, plan.packed);
      this.schedule();
    } else if (this.inFlight === 0) {
      this.waitTimer = setTimeout(() => this.schedule(), this.options.maxWaitMs - waited);
    }
  }

  private async dispatch(picked: readonly QueuedInput[], packed: boolean): Promise<void> {
    this.inFlight++;
    // Inputs are grouped by route snapshot, in the order the snapshots were first picked.
    const bySlot = new Map<FusionRoute, QueuedInput[]>();
    for (const input of picked) {
      const group = bySlot.get(input.route);
      if (group) group.push(input);
      else bySlot.set(input.route, [input]);
    }
    const inputs = [...bySlot.values()].flat();
    const started = performance.now();
    for (const input of inputs) this.observer.queueWait(input.route.name, (started - input.enqueuedAt) / 1000);
    try {
      const batch = (packed ? packBatch : padBatch)(inputs.map((i) => i.ids));
      const realTokens = batch.lengths.reduce((a, b) => a + b, 0);
      const computedTokens = batch.rows * batch.seqLen;
      const slots = [...bySlot].map(([route, own]) => ({ route, inputs: own.length, explain: own.some((i) => i.request.explain) }));
      const { outputs, seconds } = await this.engine.run(batch, slots);
      const routes = new Map<string, { inputs: number; tokens: number }>();
      for (const input of inputs) {
        const entry = routes.get(input.route.name) ?? { inputs: 0, tokens: 0 };
        routes.set(input.route.name, { inputs: entry.inputs + 1, tokens: entry.tokens + input.length });
      }
      this.observer.pass({ inputs: inputs.length, lengths: batch.lengths, routes, realTokens, computedTokens, seconds });
      const answering = { started, seconds };
      inputs.forEach((input, i) => this.deliver(input, outputs[i], answering));
    } catch (err) {
      for (const { request } of inputs) this.fail(request, err as Error);
    } finally {
      this.inFlight--;
      this.schedule();
    }
  }

  private deliver(input: QueuedInput, output: InputReadout, pass: AnsweringPass): void {
    const { request } = input;
    if (request.settled) return;
    request.results[input.index] = output;
    if (--request.remaining > 0) return;
    this.settle(request);
    request.onAnswer?.(pass);
    request.resolve(request.results);
  }

  private fail(request: PendingRequest, err: Error): void {
    if (request.settled) return;
    this.settle(request);
    this.queue = this.queue.filter((input) => input.request !== request);
    request.reject(err);
  }

  private settle(request: PendingRequest): void {
    request.settled = true;
    clearTimeout(request.timer);
    this.engine.release(request.route);
  }
}
