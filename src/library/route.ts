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

    const fusionInputs = fusion ? fusionTensors(fusion, variant)[l] : neutralFusion(d, variant);
    for (const [key, tensor] of Object.entries(fusionInputs)) put(names[key as keyof typeof names], tensor);
  }
  return feeds;
}

type FusionInputs = Partial<Record<keyof ReturnType<typeof routeInputs>, Tensor>>;

const derived = { fused: new WeakMap<FusionModule, FusionInputs[]>(), literal: new WeakMap<FusionModule, FusionInputs[]>() };

/**
 * The fusion's graph inputs per layer. The rewrite's W_qᵀW_k costs d³ per layer to compute, so it
 * is computed once per loaded fusion and shared by every route assembled from it.
 */
function fusionTensors(fusion: FusionModule, variant: "fused" | "literal"): FusionInputs[] {
  const cached = derived[variant].get(fusion);
  if (cached) return cached;
  const tensors = fusion.layers.map((f): FusionInputs => {
    const d = f.queryBias.shape[0];
    const valueWeight = f.valueWeight ? transpose(f.valueWeight) : identity(d);
    if (variant === "literal") {
      return { valueWeight, queryWeight: transpose(f.queryWeight), queryBias: f.queryBias, keyWeight: transpose(f.keyWeight), keyBias: f.keyBias };
    }
    const scoreBias = matmul({ shape: [1, d], data: f.queryBias.data }, f.keyWeight).data;
    return { valueWeight, scoreWeight: matmul(transpose(f.queryWeight), f.keyWeight), scoreBias: { shape: [d], data: scoreBias } };
  });
  derived[variant].set(fusion, tensors);
  return tensors;
}

const neutral = { fused: new Map<number, FusionInputs>(), literal: new Map<number, FusionInputs>() };

/**
 * No fusion: every score is 0 (softmax over one adapter is exactly 1) and the value is the
 * identity. These inputs are the same for every single-adapter route and layer, so they exist once.
 */
function neutralFusion(d: number, variant: "fused" | "literal"): FusionInputs {
  const cached = neutral[variant].get(d);
  if (cached) return cached;
  const inputs: FusionInputs =
    variant === "fused"
      ? { valueWeight: identity(d), scoreWeight: zeros(d, d), scoreBias: zeros(d) }
      : { valueWeight: identity(d), queryWeight: zeros(d, d), queryBias: zeros(d), keyWeight: zeros(d, d), keyBias: zeros(d) };
  neutral[variant].set(d, inputs);
  return inputs;
}

function zeros(...shape: number[]): Tensor {
  return { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
}
