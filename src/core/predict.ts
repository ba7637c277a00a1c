import { performance } from "node:perf_hooks";
import type { InputReadout } from "../engine/readout.js";
import type { Encoded } from "../engine/tokenizer.js";
import type { FusionRoute } from "../library/route.js";
import type { AnsweringPass } from "../scheduler/scheduler.js";
import type { Serving } from "./lifecycle.js";

/** How a replica of an object-store library answers while the manifest changes (README: Replicas). */
export type LibraryConsistency = "eventual" | "strict";

export interface PredictRequest {
  /** The route's name, as a client gives it. */
  readonly route: string;
  readonly texts: readonly string[];
  /** Whether the readouts carry the fusion attention. */
  readonly explain: boolean;
}

export interface PredictOptions {
  readonly consistency: LibraryConsistency;
  /** Called once the route is known, before any work on it. */
  readonly onRoute?: (name: string) => void;
  /** Called when a strict answer had to be computed again on a newer version. */
  readonly onRecompute?: (name: string) => void;
}

/** One input's answer: the tokens the model read and what the engine computed from them. */
export interface PredictedInput {
  readonly encoded: Encoded;
  readonly readout: InputReadout;
}

/**
 * Where a prediction's time went, in seconds, from `started` to `answered` (performance.now()):
 * the phases of fusion_request_phase_seconds that happen here. They follow one another, so they
 * add up to answered - started. A recomputed answer adds its second submission's queue, pass and hop.
 */
export interface PredictTiming {
  readonly started: number;
  /** The route looked up and the texts tokenized. */
  readonly tokenize: number;
  /** Submitted until the pass that answered was handed to the engine thread: the longest queue wait of its inputs. */
  readonly queue: number;
  /** The engine thread's time for that pass: forward pass and heads. */
  readonly pass: number;
  /** The rest of each submission: packing the batch, the crossings to the engine thread and back, a pass handed over early waiting behind the running one. */
  readonly hop: number;
  /** A strict replica's wait for the manifest read that confirms the version; undefined on an eventual one. */
  readonly confirm: number | undefined;
  readonly answered: number;
}

export interface PredictResult {
  /** The route, in the version that answered. */
  readonly route: FusionRoute;
  /** In input order. */
  readonly inputs: readonly PredictedInput[];
  readonly timing: PredictTiming;
}

/**
 * The prediction path every API shares: resolve the route, tokenize, submit to the scheduler,
 * and, for a strict replica, confirm the version against the store before answering.
 */
export async function predict(serving: Serving, request: PredictRequest, options: PredictOptions): Promise<PredictResult> {
  const arrived = performance.now();
  // Each phase runs from the end of the one before, so no time falls between them.
  let clock = arrived;
  const lap = () => {
    const now = performance.now();
    const seconds = (now - clock) / 1000;
    clock = now;
    return seconds;
  };
  const { runtime, scheduler } = serving.require();
  const { library } = runtime;
  let route = library.route(request.route);
  options.onRoute?.(route.name);
  const encoded = request.texts.map((text) => runtime.tokenizer.encode(text));
  const sequences = encoded.map((e) => e.ids);
  const tokenize = lap();
  let queue = 0;
  let pass = 0;
  let hop = 0;
  const submit = async (snapshot: FusionRoute) => {
    const submitted = clock;
    let answering: AnsweringPass = { started: submitted, seconds: 0 };
    const readouts = await scheduler.submit(snapshot, sequences, request.explain, (p) => (answering = p));
    const waited = (answering.started - submitted) / 1000;
    queue += waited;
    pass += answering.seconds;
    hop += lap() - waited - answering.seconds;
    return readouts;
  };
  let readouts = await submit(route);
  let confirm: number | undefined;
  if (options.consistency === "strict") {
    // The answer goes out only once a manifest read sent after the request arrived has named
    // its version; if that read brought another version of the route, the answer is computed
    // again on it, which the read proved live during the request.
    await library.confirm(arrived);
    const current = library.route(route.name);
    confirm = lap();
    if (current.version !== route.version) {
      options.onRecompute?.(route.name);
      route = current;
      readouts = await submit(route);
    }
  }
  const timing = { started: arrived, tokenize, queue, pass, hop, confirm, answered: clock };
  return { route, inputs: readouts.map((readout, i) => ({ encoded: encoded[i], readout })), timing };
}
