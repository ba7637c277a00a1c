import type { Tensor } from "../formats/safetensors.js";
import type { ScoreMatrix } from "./fold.js";
import type { PredictionHead } from "./heads.js";

/**
 * What the engine needs of the modules it serves. The library's modules (library/adapterhub.ts)
 * satisfy these types and carry more (names, folders, versions); the engine never needs to know
 * where its weights came from.
 */

/** One layer's bottleneck, weights [in, out], the adapter's scaling folded into the up-projection. */
export interface AdapterLayer {
  readonly downWeight: Tensor; // [d, r]
  readonly downBias: Tensor; // [r]
  readonly upWeight: Tensor; // [r, d]
  readonly upBias: Tensor; // [d]
}

export interface AdapterWeights {
  /** null for a layer the adapter leaves out. */
  readonly layers: readonly (AdapterLayer | null)[];
}

/** What serving needs of one fusion layer: its score matrix (fold.ts, ScoreMatrix) and its value. */
export interface FusionLayer extends ScoreMatrix {
  readonly valueWeight: Tensor | null; // torch layout [out, in]; null for a static fusion
}

/**
 * A fusion layer as saved, with the score matrix formed from it: what the literal graph and the
 * checks of the rewrite read. The library serves a fusion without these (adapterhub.ts, forServing).
 */
export interface SavedFusionLayer extends FusionLayer {
  readonly queryWeight: Tensor; // torch layout [out, in]
  readonly queryBias: Tensor;
  readonly keyWeight: Tensor;
  readonly keyBias: Tensor;
}

export interface FusionWeights<Layer extends FusionLayer = FusionLayer> {
  readonly kind: "dynamic" | "static";
  readonly layers: readonly Layer[];
}

/** One route's modules: its adapters in fusion order, and its fusion (null for a single adapter). */
export interface RouteModules {
  readonly adapters: readonly AdapterWeights[];
  readonly fusion: FusionWeights | null;
}

/** A route as the engine serves it: its modules, its head, and the name its metrics carry. */
export interface ServedRoute extends RouteModules {
  readonly name: string;
  readonly head: PredictionHead;
}
