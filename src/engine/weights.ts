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

/**
 * The query, key and value as saved, and the score matrix the served forms use instead of query
 * and key (fold.ts, ScoreMatrix), formed once when the fusion is read.
 */
export interface FusionLayer extends ScoreMatrix {
  readonly queryWeight: Tensor; // torch layout [out, in]
  readonly queryBias: Tensor;
  readonly keyWeight: Tensor;
  readonly keyBias: Tensor;
  readonly valueWeight: Tensor | null;
}

export interface FusionWeights {
  readonly kind: "dynamic" | "static";
  readonly layers: readonly FusionLayer[];
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
