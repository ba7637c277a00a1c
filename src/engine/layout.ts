import type { BackboneConfig } from "./backbone.js";
import { directInputs, routeInputs } from "./bert-graph.js";
import { folderOfThisThread, type FusionFolder, type FoldOutputs } from "./fold.js";
import { concat, identity, transpose } from "./linalg.js";
import { scaleInput } from "./products.js";
import { quantizePerColumn } from "./quantize.js";
import type { Tensor } from "../formats/safetensors.js";
import type { FusionLayer, FusionWeights, RouteModules, SavedFusionLayer } from "./weights.js";

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

/**
 * Lays the route's weights out as graph inputs. Adapters with different bottleneck sizes are
 * zero-padded to the largest: a zero down column gives relu(0) = 0, and a zero up row adds
 * nothing, so the padding is exact. A single adapter runs as a one-adapter fusion whose
 * attention is exactly 1 (softmax of one score) and whose value is the identity (score terms
 * zero, out_w the bare up-projection). With no adapter at all, one all-zero adapter adds exactly
 * nothing: the plain backbone through the same session. A fusion is folded into its adapters by
 * `folder` (fold.ts); without one, by a folder of this thread's own.
 */
export async function routeFeeds(
  backbone: BackboneConfig,
  modules: RouteModules,
  variant: "fused" | "literal" = "fused",
  folder: FusionFolder = folderOfThisThread(),
): Promise<RouteFeeds> {
  if (variant === "literal") return literalFeeds(backbone, modules);
  const { adapters, fusion } = modules;
  const { numLayers: L, hiddenSize: d } = backbone;
  const { n, r, k } = bottleneckOf(modules);
  // Stacked over layers: down [L, d, K], its bias [L, 1, K], U = [W_up ; b_up] [L, K + N, d].
  // Adapter i owns columns (rows of U) i·R .. i·R+R and row K + i of U; padding stays zero.
  const down = new Float32Array(L * d * k);
  const downBias = new Float32Array(L * k);
  const up = new Float32Array(L * (k + n) * d);
  for (let l = 0; l < L; l++) {
    adapters.forEach((adapter, i) => {
      const layer = adapter.layers[l];
      if (!layer) return;
      placeColumns({ shape: [d, k], data: down.subarray(l * d * k, (l + 1) * d * k) }, layer.downWeight, i * r);
      downBias.set(layer.downBias.data, l * k + i * r);
      up.set(layer.upWeight.data, (l * (k + n) + i * r) * d);
      up.set(layer.upBias.data, (l * (k + n) + k + i) * d);
    });
  }
  const width = 2 * k + n;
  let folded: FoldOutputs;
  if (fusion) {
    const stack = (pick: (layer: FusionLayer) => Tensor) => concat(fusion.layers.map((layer) => pick(layer).data));
    folded = await folder.fold(
      { layers: L, hidden: d, bottleneck: k, adapters: n },
      {
        scoreWeight: stack((f) => f.scoreWeight),
        scoreBias: stack((f) => f.scoreBias),
        valueWeight: fusion.kind === "dynamic" ? stack((f) => f.valueWeight!) : null,
        downWeight: down,
        downBias,
        up,
      },
    );
  } else {
    // No fusion: the score terms are zero, so only the down-projection fills in_w.
    const inWeight = new Float32Array(L * d * width);
    const inBias = new Float32Array(L * width);
    for (let l = 0; l < L; l++) {
      placeColumns({ shape: [d, width], data: inWeight.subarray(l * d * width, (l + 1) * d * width) }, { shape: [d, k], data: down.subarray(l * d * k, (l + 1) * d * k) }, 0);
      inBias.set(downBias.subarray(l * k, (l + 1) * k), l * width);
    }
    folded = { inWeight, inBias, outWeight: up };
  }
  const feeds: Record<string, FeedTensor> = {};
  const layerOf = (data: Float32Array, l: number, dims: number[]): FeedTensor => {
    const size = dims.reduce((a, b) => a * b, 1);
    return { type: "float32", dims, data: data.subarray(l * size, (l + 1) * size) };
  };
  for (let l = 0; l < L; l++) {
    const names = routeInputs(l);
    feeds[names.inWeight] = layerOf(folded.inWeight, l, [d, width]);
    feeds[names.inBias] = layerOf(folded.inBias, l, [width]);
    feeds[names.outWeight] = layerOf(folded.outWeight, l, [k + n, d]);
  }
  return feeds;
}

/**
 * A route's inputs for a direct slot (bert-graph.ts, directTail): its modules unfolded, so building
 * them is copying the adapters side by side, no product. The fusion's matrices (its score matrix,
 * formed when the fusion was read, and W_v) are the module's own arrays, not copies. `neutral`
 * holds what a route without a fusion or value takes: d×d zeros (score: every score 0, the softmax
 * over one adapter exactly 1) and the identity (value).
 */
export function directFeeds(backbone: BackboneConfig, modules: RouteModules, neutral: NeutralFusion): RouteFeeds {
  const { adapters, fusion } = modules;
  const { numLayers: L, hiddenSize: d } = backbone;
  const { n, r, k } = bottleneckOf(modules);
  const perLayer = n * d * r + k + (k + n) * d;
  const all = new Float32Array(L * perLayer);
  const feeds: Record<string, FeedTensor> = {};
  const tensor = (data: Float32Array, dims: number[]): FeedTensor => ({ type: "float32", dims, data });
  for (let l = 0; l < L; l++) {
    const base = l * perLayer;
    const down = all.subarray(base, base + n * d * r);
    const downBias = all.subarray(base + n * d * r, base + n * d * r + k);
    const up = all.subarray(base + n * d * r + k, base + perLayer);
    adapters.forEach((adapter, i) => {
      const layer = adapter.layers[l];
      if (!layer) return;
      const block = down.subarray(i * d * r, (i + 1) * d * r);
      if (layer.downBias.shape[0] === r) block.set(layer.downWeight.data);
      else placeColumns({ shape: [d, r], data: block }, layer.downWeight, 0);
      downBias.set(layer.downBias.data, i * r);
      up.set(layer.upWeight.data, i * r * d);
      up.set(layer.upBias.data, (k + i) * d);
    });
    const names = directInputs(l);
    const own = fusion?.layers[l];
    feeds[names.downWeight] = tensor(down, [n, d, r]);
    feeds[names.downBias] = tensor(downBias, [k]);
    feeds[names.up] = tensor(up, [k + n, d]);
    feeds[names.scoreWeight] = tensor(own?.scoreWeight.data ?? neutral.zeros, [d, d]);
    feeds[names.scoreBias] = tensor(own?.scoreBias.data ?? neutral.zeros.subarray(0, d), [d]);
    feeds[names.valueWeight] = tensor(own?.valueWeight?.data ?? neutral.identity, [d, d]);
  }
  return feeds;
}

/** Bytes directFeeds allocates for a route (the fusion's matrices it uses in place are not counted). */
export function directFeedBytes(backbone: BackboneConfig, modules: RouteModules): number {
  const { n, r, k } = bottleneckOf(modules);
  const d = backbone.hiddenSize;
  return backbone.numLayers * (n * d * r + k + (k + n) * d) * Float32Array.BYTES_PER_ELEMENT;
}

/** d×d zeros and the d×d identity, shared by every direct route that needs them. */
export interface NeutralFusion {
  readonly zeros: Float32Array;
  readonly identity: Float32Array;
}

export function neutralFusion(d: number): NeutralFusion {
  return { zeros: new Float32Array(d * d), identity: identity(d).data };
}

/** N, the largest bottleneck R, and K = N·R; at least one adapter of at least one column. */
function bottleneckOf({ adapters }: RouteModules): { n: number; r: number; k: number } {
  const n = Math.max(1, adapters.length);
  const r = Math.max(1, ...adapters.flatMap((a) => a.layers.map((layer) => layer?.downBias.shape[0] ?? 0)));
  return { n, r, k: n * r };
}

/** The literal graph's inputs (bert-graph.ts, literalTail): every fusion product left to the graph. */
function literalFeeds(backbone: BackboneConfig, modules: RouteModules): RouteFeeds {
  const { adapters, fusion } = modules;
  const d = backbone.hiddenSize;
  const { n, r, k } = bottleneckOf(modules);
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
export function backboneFeeds(backbone: BackboneConfig, variant: "fused" | "literal" = "fused"): Promise<RouteFeeds> {
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
function literalFusionInputs(fusion: FusionWeights): LiteralInputs[] {
  if (!fusion.layers.every((f): f is SavedFusionLayer => "queryWeight" in f)) {
    throw new Error("the literal graph needs a fusion as saved, with its query and key (loadFusion); a library serves fusions without them");
  }
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
