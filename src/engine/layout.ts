import type { AdapterModule, FusionModule } from "../library/adapterhub.js";
import type { BackboneConfig } from "./backbone.js";
import { routeInputs } from "./bert-graph.js";
import { identity, matmul, transpose } from "./linalg.js";
import { scaleInput } from "./products.js";
import { quantizePerColumn } from "./quantize.js";
import type { Tensor } from "./safetensors.js";

/**
 * The engine's own layout of a route's weights: the graph inputs that make the shared session
 * compute one route (docs/design.md, "The fused graph"). Plain typed arrays rather than ONNX
 * Runtime tensors, so a layout can be built in one thread and handed to another without a copy.
 */
export interface FeedTensor {
  readonly type: "float32" | "int8";
  readonly dims: readonly number[];
  readonly data: Float32Array | Int8Array;
}

export type RouteFeeds = Readonly<Record<string, FeedTensor>>;

/** What the library hands the engine for one route: its adapters in fusion order, and its fusion. */
export interface RouteModules {
  readonly adapters: readonly AdapterModule[];
  readonly fusion: FusionModule | null;
}

/**
 * Lays the route's weights out as graph inputs. Adapters with different bottleneck sizes are
 * zero-padded to the largest: a zero down column gives relu(0) = 0, and a zero up row adds
 * nothing, so the padding is exact. A single adapter runs as a one-adapter fusion whose
 * attention is exactly 1 (softmax of one score) and whose value is the identity (score terms
 * zero, out_w the bare up-projection). With no adapter at all, one all-zero adapter adds exactly
 * nothing: the plain backbone through the same session.
 */
export function routeFeeds(
  backbone: BackboneConfig,
  { adapters, fusion }: RouteModules,
  variant: "fused" | "literal" = "fused",
  rewritten?: RewrittenFusions,
): RouteFeeds {
  const d = backbone.hiddenSize;
  const n = Math.max(1, adapters.length);
  const r = Math.max(1, ...adapters.flatMap((a) => a.layers.map((layer) => layer?.downBias.shape[0] ?? 0)));
  const k = n * r;
  const feeds: Record<string, FeedTensor> = {};
  const put = (key: string, t: Tensor) => (feeds[key] = { type: "float32", dims: t.shape, data: t.data });

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
    const f = fusion ? (rewritten?.get(fusion) ?? scoreAndValue(fusion))[l] : null;
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

/** Graph inputs that make the adapter graph compute the plain backbone. */
export function backboneFeeds(backbone: BackboneConfig, variant: "fused" | "literal" = "fused"): RouteFeeds {
  return routeFeeds(backbone, { adapters: [], fusion: null }, variant);
}

/** The feeds an int8 fused graph takes: each layer's two fusion matrices quantized per column to ±weightMax. */
export function quantizeRouteFeeds(feeds: RouteFeeds, numLayers: number, weightMax: number): RouteFeeds {
  const quantized: Record<string, FeedTensor> = { ...feeds };
  for (let l = 0; l < numLayers; l++) {
    const names = routeInputs(l);
    for (const name of [names.inWeight, names.outWeight]) {
      const { dims, data } = feeds[name];
      const { values, scales } = quantizePerColumn({ shape: dims as number[], data: data as Float32Array }, weightMax);
      quantized[name] = { type: "int8", dims, data: values };
      quantized[scaleInput(name)] = { type: "float32", dims: [scales.length], data: scales };
    }
  }
  return quantized;
}

/** Every buffer of a layout once, for handing it to another thread without a copy. */
export function feedBuffers(feeds: RouteFeeds): ArrayBuffer[] {
  return [...new Set(Object.values(feeds).map((f) => f.data.buffer as ArrayBuffer))];
}

export function feedBytes(feeds: RouteFeeds): number {
  return Object.values(feeds).reduce((sum, f) => sum + f.data.byteLength, 0);
}

type LiteralInputs = Partial<Record<keyof ReturnType<typeof routeInputs>, Tensor>>;
/** r = x·score + scoreBias, the value as a right factor: one fusion layer in the rewritten form. */
interface ScoreAndValue {
  readonly score: Tensor; // [d, d] = W_qᵀ W_k
  readonly scoreBias: Tensor; // [1, d] = b_q W_k
  readonly value: Tensor; // [d, d] = W_vᵀ, or the identity
}

function scoreAndValue(fusion: FusionModule): ScoreAndValue[] {
  return fusion.layers.map((f) => {
    const d = f.queryBias.shape[0];
    return {
      score: matmul(transpose(f.queryWeight), f.keyWeight),
      scoreBias: matmul({ shape: [1, d], data: f.queryBias.data }, f.keyWeight),
      value: f.valueWeight ? transpose(f.valueWeight) : identity(d),
    };
  });
}

/**
 * A fusion's W_qᵀW_k costs d³ per layer to compute, so the layout thread keeps it for the fusions
 * it laid out most recently: a change of one adapter re-lays every route that fuses it, and those
 * share their fusion. Modules reach that thread as copies, hence the key by content version
 * (a hash of the files) rather than by object.
 */
export class RewrittenFusions {
  private readonly kept = new Map<string, ScoreAndValue[]>();

  constructor(private readonly capacity = 8) {}

  get(fusion: FusionModule): ScoreAndValue[] {
    let entry = this.kept.get(fusion.version);
    if (entry) this.kept.delete(fusion.version);
    else entry = scoreAndValue(fusion);
    this.kept.set(fusion.version, entry);
    if (this.kept.size > this.capacity) this.kept.delete(this.kept.keys().next().value!);
    return entry;
  }
}

function literalFusionInputs(fusion: FusionModule): LiteralInputs[] {
  return fusion.layers.map((f) => ({
    valueWeight: f.valueWeight ? transpose(f.valueWeight) : identity(f.queryBias.shape[0]),
    queryWeight: transpose(f.queryWeight),
    queryBias: f.queryBias,
    keyWeight: transpose(f.keyWeight),
    keyBias: f.keyBias,
  }));
}

/**
 * No fusion, literal graph: every score is 0 (softmax over one adapter is exactly 1) and the value
 * is the identity.
 */
function neutralLiteralInputs(d: number): LiteralInputs {
  return { valueWeight: identity(d), queryWeight: zeros(d, d), queryBias: zeros(d), keyWeight: zeros(d, d), keyBias: zeros(d) };
}

function zeros(...shape: number[]): Tensor {
  return { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
}
