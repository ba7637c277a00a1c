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
 * attention is exactly 1 (softmax of one score) and whose value is the identity (score terms
 * zero, out_w the bare up-projection). With no adapter at all, one all-zero adapter adds exactly
 * nothing: the plain backbone through the same session.
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
  const k = n * r;
  const feeds: Record<string, ort.Tensor> = {};
  const put = (key: string, t: Tensor) => (feeds[key] = new ort.Tensor("float32", t.data, t.shape as number[]));

  for (let l = 0; l < backbone.numLayers; l++) {
    const names = routeInputs(l);
    // All adapters side by side: down [d, K], up [K, d] (adapter i owns rows i·R .. i·R+R), up bias [N, d].
    const down = zeros(d, k);
    const downBias = zeros(k);
    const up = zeros(k, d);
    const upBias = zeros(n, d);
    adapters.forEach((adapter, i) => {
      const layer = adapter.layers[l];
      if (!layer) return;
      const ri = layer.downBias.shape[0];
      for (let row = 0; row < d; row++) down.data.set(layer.downWeight.data.subarray(row * ri, (row + 1) * ri), row * k + i * r);
      downBias.data.set(layer.downBias.data, i * r);
      up.data.set(layer.upWeight.data, i * r * d);
      upBias.data.set(layer.upBias.data, i * d);
    });

    if (variant === "literal") {
      put(names.downWeight, down);
      put(names.downBias, downBias);
      put(names.upWeight, { shape: [n, r, d], data: up.data });
      put(names.upBias, { shape: [n, 1, d], data: upBias.data });
      const literal = fusion ? literalFusionInputs(fusion)[l] : neutralLiteralInputs(d);
      for (const [key, tensor] of Object.entries(literal)) put(names[key as keyof typeof names], tensor);
      continue;
    }

    // See fusedTail in bert-graph.ts: in_w = [W_down | M·W_upᵀ | M·b_upᵀ], out_w = [W_up·W_v ; b_up·W_v].
    const inWeight = zeros(d, 2 * k + n);
    const inBias = zeros(2 * k + n);
    let outTop = up;
    let outBottom = upBias;
    const f = fusion ? scoreAndValue(fusion)[l] : null;
    if (f) {
      const upT = transpose(up);
      const upBiasT = transpose(upBias);
      const scoreUp = matmul(f.score, upT);
      const scoreUpBias = matmul(f.score, upBiasT);
      for (let row = 0; row < d; row++) {
        inWeight.data.set(scoreUp.data.subarray(row * k, (row + 1) * k), row * (2 * k + n) + k);
        inWeight.data.set(scoreUpBias.data.subarray(row * n, (row + 1) * n), row * (2 * k + n) + 2 * k);
      }
      inBias.data.set(matmul(f.scoreBias, upT).data, k);
      inBias.data.set(matmul(f.scoreBias, upBiasT).data, 2 * k);
      outTop = matmul(up, f.value);
      outBottom = matmul(upBias, f.value);
    }
    for (let row = 0; row < d; row++) inWeight.data.set(down.data.subarray(row * k, (row + 1) * k), row * (2 * k + n));
    inBias.data.set(downBias.data, 0);
    const outWeight = zeros(k + n, d);
    outWeight.data.set(outTop.data, 0);
    outWeight.data.set(outBottom.data, k * d);
    put(names.inWeight, inWeight);
    put(names.inBias, inBias);
    put(names.outWeight, outWeight);
  }
  return feeds;
}

type LiteralInputs = Partial<Record<keyof ReturnType<typeof routeInputs>, Tensor>>;
/** r = x·score + scoreBias, the value as a right factor: one fusion layer in the rewritten form. */
interface ScoreAndValue {
  readonly score: Tensor; // [d, d] = W_qᵀ W_k
  readonly scoreBias: Tensor; // [1, d] = b_q W_k
  readonly value: Tensor; // [d, d] = W_vᵀ, or the identity
}

const rewritten = new WeakMap<FusionModule, ScoreAndValue[]>();
const literal = new WeakMap<FusionModule, LiteralInputs[]>();

/**
 * A fusion's W_qᵀW_k costs d³ per layer to compute, so it is computed once per loaded fusion and
 * shared by every route assembled from it.
 */
function scoreAndValue(fusion: FusionModule): ScoreAndValue[] {
  let cached = rewritten.get(fusion);
  if (!cached) {
    cached = fusion.layers.map((f) => {
      const d = f.queryBias.shape[0];
      return {
        score: matmul(transpose(f.queryWeight), f.keyWeight),
        scoreBias: matmul({ shape: [1, d], data: f.queryBias.data }, f.keyWeight),
        value: f.valueWeight ? transpose(f.valueWeight) : identity(d),
      };
    });
    rewritten.set(fusion, cached);
  }
  return cached;
}

function literalFusionInputs(fusion: FusionModule): LiteralInputs[] {
  let cached = literal.get(fusion);
  if (!cached) {
    cached = fusion.layers.map((f) => ({
      valueWeight: f.valueWeight ? transpose(f.valueWeight) : identity(f.queryBias.shape[0]),
      queryWeight: transpose(f.queryWeight),
      queryBias: f.queryBias,
      keyWeight: transpose(f.keyWeight),
      keyBias: f.keyBias,
    }));
    literal.set(fusion, cached);
  }
  return cached;
}

const neutral = new Map<number, LiteralInputs>();

/**
 * No fusion, literal graph: every score is 0 (softmax over one adapter is exactly 1) and the value
 * is the identity. The same for every single-adapter route and layer, so it exists once.
 */
function neutralLiteralInputs(d: number): LiteralInputs {
  let cached = neutral.get(d);
  if (!cached) {
    cached = { valueWeight: identity(d), queryWeight: zeros(d, d), queryBias: zeros(d), keyWeight: zeros(d, d), keyBias: zeros(d) };
    neutral.set(d, cached);
  }
  return cached;
}

function zeros(...shape: number[]): Tensor {
  return { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
}
