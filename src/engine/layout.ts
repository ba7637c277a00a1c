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
  folds: FoldCache = new FoldCache(0),
): RouteFeeds {
  const d = backbone.hiddenSize;
  const n = Math.max(1, adapters.length);
  const r = Math.max(1, ...adapters.flatMap((a) => a.layers.map((layer) => layer?.downBias.shape[0] ?? 0)));
  const k = n * r;
  const feeds: Record<string, FeedTensor> = {};
  const put = (key: string, t: Tensor) => (feeds[key] = { type: "float32", dims: t.shape, data: t.data });

  for (let l = 0; l < backbone.numLayers; l++) {
    const names = routeInputs(l);
    if (variant === "literal") {
      // All adapters side by side: down [d, K], up [K, d] (adapter i owns rows i·R .. i·R+R), up bias [N, d].
      const down = zeros(d, k);
      const downBias = zeros(k);
      const up = zeros(k, d);
      const upBias = zeros(n, d);
      adapters.forEach((adapter, i) => {
        const layer = adapter.layers[l];
        if (!layer) return;
        placeColumns(down, layer.downWeight, i * r);
        downBias.data.set(layer.downBias.data, i * r);
        up.data.set(layer.upWeight.data, i * r * d);
        upBias.data.set(layer.upBias.data, i * d);
      });
      put(names.downWeight, down);
      put(names.downBias, downBias);
      put(names.upWeight, { shape: [n, r, d], data: up.data });
      put(names.upBias, { shape: [n, 1, d], data: upBias.data });
      const literal = fusion ? literalFusionInputs(fusion)[l] : neutralLiteralInputs(d);
      for (const [key, tensor] of Object.entries(literal)) put(names[key as keyof typeof names], tensor);
      continue;
    }

    // See fusedTail in bert-graph.ts: in_w = [W_down | M·W_upᵀ | M·b_upᵀ], in_b = [b_down | m·W_upᵀ | m·b_upᵀ],
    // out_w = [W_up·W_v ; b_up·W_v]. Adapter i owns columns (rows of out_w) i·R .. i·R+R of each K-wide part
    // and column (row) i of each N-wide part; padding stays zero.
    const inWeight = zeros(d, 2 * k + n);
    const inBias = zeros(2 * k + n);
    const outWeight = zeros(k + n, d);
    adapters.forEach((adapter, i) => {
      const layer = adapter.layers[l];
      if (!layer) return;
      placeColumns(inWeight, layer.downWeight, i * r);
      inBias.data.set(layer.downBias.data, i * r);
      const folded = fusion ? folds.adapter(fusion, adapter)[l]! : { scoreUp: null, scoreUpBias: null, biasUp: null, biasUpBias: null, up: layer.upWeight, upBias: layer.upBias };
      if (folded.scoreUp) {
        placeColumns(inWeight, folded.scoreUp, k + i * r);
        placeColumns(inWeight, folded.scoreUpBias!, 2 * k + i);
        inBias.data.set(folded.biasUp!.data, k + i * r);
        inBias.data[2 * k + i] = folded.biasUpBias!.data[0];
      }
      outWeight.data.set(folded.up.data, i * r * d);
      outWeight.data.set(folded.upBias.data, (k + i) * d);
    });
    put(names.inWeight, inWeight);
    put(names.inBias, inBias);
    put(names.outWeight, outWeight);
  }
  return feeds;
}

/** Writes `block` [rows, c] into columns `first` .. first + c of `matrix` [rows, cols]. */
function placeColumns(matrix: Tensor, block: Tensor, first: number): void {
  const [rows, cols] = matrix.shape;
  const width = block.shape.length === 1 ? 1 : block.shape[1];
  for (let row = 0; row < rows; row++) matrix.data.set(block.data.subarray(row * width, (row + 1) * width), row * cols + first);
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

/** One adapter's layer folded into one fusion's: its blocks of in_w, in_b and out_w. */
interface FoldedAdapter {
  readonly scoreUp: Tensor | null; // [d, R_i] = M·W_upᵀ
  readonly scoreUpBias: Tensor | null; // [d, 1] = M·b_upᵀ
  readonly biasUp: Tensor | null; // [1, R_i] = m·W_upᵀ
  readonly biasUpBias: Tensor | null; // [1, 1] = m·b_upᵀ
  readonly up: Tensor; // [R_i, d] = W_up·W_v
  readonly upBias: Tensor; // [1, d] = b_up·W_v
}

/**
 * The folded products a layout needs, kept for the modules laid out most recently. A fusion's
 * W_qᵀW_k costs d³ per layer, and an adapter's blocks d²·R: kept, a change of one adapter
 * re-folds only that adapter, in every route that fuses it, instead of whole routes. Modules
 * reach the layout thread as copies, hence keys by content version (a hash of the files) rather
 * than by object. Capacity 0 keeps nothing (a one-off layout).
 */
export class FoldCache {
  private readonly fusions = new Map<string, ScoreAndValue[]>();
  private readonly adapters = new Map<string, (FoldedAdapter | null)[]>();

  constructor(private readonly capacity = 32) {}

  adapter(fusion: FusionModule, adapter: AdapterModule): (FoldedAdapter | null)[] {
    return this.remember(this.adapters, `${fusion.version}:${adapter.version}`, () => {
      const rewritten = this.remember(this.fusions, fusion.version, () => scoreAndValue(fusion));
      return adapter.layers.map((layer, l) => (layer ? foldAdapter(layer.upWeight, layer.upBias, rewritten[l]) : null));
    });
  }

  private remember<T>(kept: Map<string, T>, key: string, make: () => T): T {
    let entry = kept.get(key);
    if (entry) kept.delete(key);
    else entry = make();
    if (this.capacity === 0) return entry;
    kept.set(key, entry);
    if (kept.size > this.capacity) kept.delete(kept.keys().next().value!);
    return entry;
  }
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

function foldAdapter(up: Tensor, upBias: Tensor, f: ScoreAndValue): FoldedAdapter {
  const d = upBias.shape[0];
  const upT = transpose(up);
  const upBiasRow = { shape: [1, d], data: upBias.data };
  const upBiasT = { shape: [d, 1], data: upBias.data };
  return {
    scoreUp: matmul(f.score, upT),
    scoreUpBias: matmul(f.score, upBiasT),
    biasUp: matmul(f.scoreBias, upT),
    biasUpBias: matmul(f.scoreBias, upBiasT),
    up: matmul(up, f.value),
    upBias: matmul(upBiasRow, f.value),
  };
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
