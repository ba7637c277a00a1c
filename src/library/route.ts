import { createHash } from "node:crypto";
import ort from "onnxruntime-node";
import type { BackboneConfig } from "../engine/backbone.js";
import { routeInputs, type GraphVariant } from "../engine/bert-graph.js";
import type { RouteFeeds } from "../engine/engine.js";
import type { PredictionHead } from "../engine/heads.js";
import { identity, matmul, transpose } from "../engine/linalg.js";
import type { Tensor } from "../engine/safetensors.js";
import type { AdapterModule, FusionModule } from "./adapterhub.js";

/**
 * What one route serves, frozen at the moment it was assembled: its adapters, its fusion (none for
 * a single-adapter route), its head, and the graph inputs built from them. A hot swap builds a new
 * FusionRoute and replaces the reference; a batch holding the old one finishes on it.
 */
export interface FusionRoute {
  readonly name: string;
  readonly kind: "fusion" | "adapter";
  readonly version: string;
  readonly adapters: readonly AdapterModule[];
  readonly fusion: FusionModule | null;
  readonly head: PredictionHead;
  readonly feeds: RouteFeeds;
}

export function assembleRoute(
  name: string,
  backbone: BackboneConfig,
  adapters: readonly AdapterModule[],
  fusion: FusionModule | null,
  head: PredictionHead,
  variant: GraphVariant = "fused",
): FusionRoute {
  const version = createHash("sha256")
    .update(JSON.stringify([adapters.map((a) => a.version), fusion?.version ?? null]))
    .digest("hex")
    .slice(0, 12);
  return {
    name,
    kind: fusion ? "fusion" : "adapter",
    version,
    adapters,
    fusion,
    head,
    feeds: variant === "plain" ? {} : buildFeeds(backbone, adapters, fusion, variant),
  };
}

/** Graph inputs that make the adapter graph compute the plain backbone. */
export function backboneFeeds(backbone: BackboneConfig, variant: "fused" | "literal" = "fused"): RouteFeeds {
  return buildFeeds(backbone, [], null, variant);
}

/**
 * Lays the route's weights out as graph inputs. Adapters with different bottleneck sizes are
 * zero-padded to the largest: a zero down column gives relu(0) = 0, and a zero up row adds
 * nothing, so the padding is exact. A single adapter runs as a one-adapter fusion whose
 * attention is exactly 1 (softmax of one score) and whose value is the identity. With no adapter
 * at all, one all-zero adapter adds exactly nothing: the plain backbone through the same session.
 */
function buildFeeds(
  backbone: BackboneConfig,
  adapters: readonly AdapterModule[],
  fusion: FusionModule | null,
  variant: "fused" | "literal",
): RouteFeeds {
  const d = backbone.hiddenSize;
  const n = Math.max(1, adapters.length);
  const r = Math.max(1, ...adapters.flatMap((a) => a.layers.map((layer) => layer?.downBias.shape[0] ?? 0)));
  const feeds: Record<string, ort.Tensor> = {};
  const put = (key: string, t: Tensor) => (feeds[key] = new ort.Tensor("float32", t.data, t.shape as number[]));
  const zeros = (...shape: number[]): Tensor => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });

  for (let l = 0; l < backbone.numLayers; l++) {
    const names = routeInputs(l);
    const downWeight = zeros(d, n * r);
    const downBias = zeros(n * r);
    const upWeight = zeros(n, r, d);
    const upBias = zeros(n, 1, d);
    adapters.forEach((adapter, i) => {
      const layer = adapter.layers[l];
      if (!layer) return;
      const ri = layer.downBias.shape[0];
      for (let row = 0; row < d; row++) {
        downWeight.data.set(layer.downWeight.data.subarray(row * ri, (row + 1) * ri), row * n * r + i * r);
      }
      downBias.data.set(layer.downBias.data, i * r);
      upWeight.data.set(layer.upWeight.data, i * r * d);
      upBias.data.set(layer.upBias.data, i * d);
    });
    put(names.downWeight, downWeight);
    put(names.downBias, downBias);
    put(names.upWeight, upWeight);
    put(names.upBias, upBias);

    const f = fusion?.layers[l];
    put(names.valueWeight, f?.valueWeight ? transpose(f.valueWeight) : identity(d));
    if (variant === "fused") {
      put(names.scoreWeight, f ? matmul(transpose(f.queryWeight), f.keyWeight) : zeros(d, d));
      const scoreBias = f ? matmul({ shape: [1, d], data: f.queryBias.data }, f.keyWeight).data : new Float32Array(d);
      put(names.scoreBias, { shape: [d], data: scoreBias });
    } else {
      put(names.queryWeight, f ? transpose(f.queryWeight) : zeros(d, d));
      put(names.queryBias, f ? f.queryBias : zeros(d));
      put(names.keyWeight, f ? transpose(f.keyWeight) : zeros(d, d));
      put(names.keyBias, f ? f.keyBias : zeros(d));
    }
  }
  return feeds;
}
