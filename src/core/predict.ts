import { performance } from "node:perf_hooks";
import type { InputReadout } from "../engine/readout.js";
import type { Encoded } from "../engine/tokenizer.js";
import type { FusionRoute } from "../library/route.js";
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

export interface PredictResult {
  /** The route, in the version that answered. */
  readonly route: FusionRoute;
  /** In input order. */
  readonly inputs: readonly PredictedInput[];
}

/**
 * The prediction path every API shares: resolve the route, tokenize, submit to the scheduler,
 * and, for a strict replica, confirm the version against the store before answering.
 */
export async function predict(serving: Serving, request: PredictRequest, options: PredictOptions): Promise<PredictResult> {
  const arrived = performance.now();
  const { runtime, scheduler } = serving.require();
  const { library } = runtime;
  let route = library.route(request.route);
  options.onRoute?.(route.name);
  const encoded = request.texts.map((text) => runtime.tokenizer.encode(text));
  const sequences = encoded.map((e) => e.ids);
  let readouts = await scheduler.submit(route, sequences, request.explain);
  if (options.consistency === "strict") {
    // The answer goes out only once a manifest read sent after the request arrived has named
    // its version; if that read brought another version of the route, the answer is computed
    // again on it, which the read proved live during the request.
    await library.confirm(arrived);
    const current = library.route(route.name);
    if (current.version !== route.version) {
      options.onRecompute?.(route.name);
      route = current;
      readouts = await scheduler.submit(route, sequences, request.explain);
    }
  }
  return { route, inputs: readouts.map((readout, i) => ({ encoded: encoded[i], readout })) };
}
