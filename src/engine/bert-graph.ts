import type { Backbone } from "./backbone.js";
import { FLOAT, INT32, INT64, OnnxGraph } from "./onnx/graph.js";
import { MatrixProducts, type Arithmetic } from "./products.js";

/**
 * Which computation follows each layer's FFN:
 * - `plain`: the backbone alone, no adapter inputs at all;
 * - `fused`: every adapter of the route in one pass, fusion rewritten (docs/design.md §2) and carried
 *   into the bottleneck space, so that no per-adapter d-sized tensor exists (see `fusedTail`);
 * - `literal`: the same adapters, fusion as the library writes it (keys and values per adapter),
 *   kept to check the rewrite and to measure what it saves.
 */
export type GraphVariant = "plain" | "fused" | "literal";

/**
 * Names of the per-route graph inputs of layer `l`; shapes in comments (N adapters, R bottleneck).
 * A graph with several route slots (see buildBertGraph) names slot s > 0's inputs `s{s}.l{l}.…`.
 */
export const routeInputs = (l: number) => ({
  inWeight: `l${l}.in_w`, // fused: [d, 2K + N] = [W_down | M·W_upᵀ | M·b_upᵀ], K = N·R
  inBias: `l${l}.in_b`, // fused: [2K + N] = [b_down | m·W_upᵀ | m·b_upᵀ]
  outWeight: `l${l}.out_w`, // fused: [K + N, d] = [W_up·W_v ; b_up·W_v]
  downWeight: `l${l}.down_w`, // literal: [d, N·R]
  downBias: `l${l}.down_b`, // literal: [N·R]
  upWeight: `l${l}.up_w`, // literal: [N, R, d]
  upBias: `l${l}.up_b`, // literal: [N, 1, d]
  valueWeight: `l${l}.value_w`, // literal: [d, d] = W_vᵀ (identity where the fusion has no value)
  queryWeight: `l${l}.query_w`, // literal: [d, d]
  queryBias: `l${l}.query_b`, // literal: [d]
  keyWeight: `l${l}.key_w`, // literal: [d, d]
  keyBias: `l${l}.key_b`, // literal: [d]
});

/**
 * Names of the inputs of a direct route slot's layer `l`: the route's modules as they are, nothing
 * folded (see `directTail`). N adapters, R bottleneck, K = N·R.
 */
export const directInputs = (l: number) => ({
  downWeight: `l${l}.direct.down_w`, // [N, d, R]: adapter i's W_down is block i
  downBias: `l${l}.direct.down_b`, // [K]
  up: `l${l}.direct.up`, // [K + N, d] = [W_up ; b_up], the adapters' up-projections then their biases
  scoreWeight: `l${l}.direct.score_w`, // [d, d] = M = W_qᵀ·W_k
  scoreBias: `l${l}.direct.score_b`, // [d] = m = b_q·W_k
  valueWeight: `l${l}.direct.value_w`, // [d, d], torch layout (identity where the fusion has no value)
});

/** A route input's name in route slot `slot` (slot 0 keeps the bare name). */
export const slotInput = (name: string, slot: number): string => (slot === 0 ? name : `s${slot}.${name}`);

/**
 * Graphs with several route slots: which tokens each slot serves. slot_order, int64 [B·T], lists the
 * batch's flat token indices slot by slot; slot_tokens, int64 [slots], how many of them each slot
 * takes; slot_unorder, int64 [B·T], is slot_order's inverse. Rows may hold inputs of several routes.
 */
export const SLOT_ORDER = "slot_order";
export const SLOT_TOKENS = "slot_tokens";
export const SLOT_UNORDER = "slot_unorder";

/** Packed graphs only: each token's position within its own input, int64 [B, T] (packing.ts). */
export const POSITION_IDS = "position_ids";

export const GRAPH_OUTPUTS = { hidden: "last_hidden_state", fusionProbs: "fusion_probs" } as const;

/** fusion_probs of route slot `slot`: [L, N_slot, tokens_slot] (several slots) or [L, N, B·T] (one). */
export const slotProbs = (slot: number): string => slotInput(GRAPH_OUTPUTS.fusionProbs, slot);

/**
 * Builds the ONNX graph for a post-LayerNorm BERT encoder. The backbone's weights are
 * initializers (held once by the session); adapter and fusion weights are graph inputs, so one
 * session serves every route and the library can change without rebuilding it.
 *
 * With `slots` > 1 (fused variant), one pass serves up to that many routes: every layer gathers
 * its tokens slot by slot (slot_order), runs each slot's fusion on its own tokens with its own
 * inputs, and puts the results back in place (slot_unorder). The backbone's products still run
 * once over the whole batch; a slot with no tokens costs a few empty kernels.
 *
 * `directSlots` more slots (fused variant) take a route's modules unfolded (directInputs): slots
 * `slots` … `slots + directSlots − 1`, for routes whose layout is not resident (docs/design.md §2).
 *
 * Outputs: last_hidden_state [B, T, d]; for adapter variants also fusion_probs [L, N, B·T]
 * (per slot with several slots: slotProbs(s), [L, N_s, tokens_s], in slot_order's order).
 */
export function buildBertGraph(backbone: Backbone, variant: GraphVariant, arithmetic: Arithmetic = "float32", slots = 1, packed = false, directSlots = 0): Uint8Array {
  const g = new OnnxGraph();
  const { hidden, probs } = buildEncoder(g, backbone, variant, arithmetic, slots, packed, directSlots);
  g.node("Identity", [hidden], {}, { outputs: [GRAPH_OUTPUTS.hidden] });
  g.output(GRAPH_OUTPUTS.hidden, FLOAT, ["B", "T", backbone.config.hiddenSize]);
  probs.forEach((layers, slot) => {
    g.node("Identity", [layers], {}, { outputs: [slotProbs(slot)] });
    g.output(slotProbs(slot), FLOAT, [backbone.config.numLayers, slotInput("N", slot), slotInput("BT", slot)]);
  });
  const slotting = `${slots > 1 ? `-${slots}slots` : ""}${directSlots > 0 ? `-${directSlots}direct` : ""}`;
  return g.toBytes(`bert-${variant}-${arithmetic === "float32" ? arithmetic : `int8w${arithmetic.weightBits}`}${slotting}${packed ? "-packed" : ""}`);
}

export interface EncoderGraph {
  /** [B, T, d] */
  readonly hidden: string;
  /** Per route slot, its fusion attention [L, N, rows·T]; none for the plain variant. */
  readonly probs: readonly string[];
}

/**
 * The encoder into `g`, without graph outputs: buildBertGraph names them for the engine, an export
 * (export/route-model.ts) adds a head to them. Route weights are read through `g.input`, so a graph
 * whose route inputs are fixed (OnnxGraph's `fixed`) holds them as initializers.
 *
 * A `packed` graph takes rows that hold several inputs side by side (packing.ts): attention_mask is
 * [B, T, T], 1 where a token may attend to another (both in the same input), and position_ids
 * [B, T] numbers each input's tokens from its own start. Everything but attention works token by
 * token, so each input's result is the one it would have alone in a row.
 */
export function buildEncoder(
  g: OnnxGraph,
  backbone: Backbone,
  variant: GraphVariant,
  arithmetic: Arithmetic = "float32",
  slots = 1,
  packed = false,
  directSlots = 0,
): EncoderGraph {
  if (arithmetic !== "float32" && variant === "literal") {
    throw new Error("the literal fusion graph exists to check the float32 rewrite; it has no int8 form");
  }
  const graphSlots = slots + directSlots;
  if (graphSlots > 1 && variant !== "fused") throw new Error("only the fused graph serves several routes in one pass");
  const { config } = backbone;
  const d = config.hiddenSize;
  const products = new MatrixProducts(g, arithmetic);

  const ids = g.input("input_ids", INT64, ["B", "T"]);
  const mask = g.input("attention_mask", INT64, packed ? ["B", "T", "T"] : ["B", "T"]);

  const seqLen = g.op("Shape", [ids], { start: 1, end: 2 });
  const positions = packed
    ? g.op("Gather", [g.floats("embeddings.position", backbone.positionEmbeddings.shape, backbone.positionEmbeddings.data), g.input(POSITION_IDS, INT64, ["B", "T"])])
    : positionEmbeddings(g, backbone, ids, mask, seqLen);
  const positionAndType = backbone.tokenTypeRow ? g.op("Add", [positions, g.floats("embeddings.token_type0", [d], backbone.tokenTypeRow.data)]) : positions;
  const words = g.op("Gather", [g.floats("embeddings.word", backbone.wordEmbeddings.shape, backbone.wordEmbeddings.data), ids]);
  let hidden = g.op(
    "LayerNormalization",
    [
      g.op("Add", [words, positionAndType]),
      g.floats("embeddings.ln.gamma", [d], backbone.embeddingNormGamma.data),
      g.floats("embeddings.ln.beta", [d], backbone.embeddingNormBeta.data),
    ],
    { axis: -1, epsilon: { float: config.layerNormEps } },
  );
  const maskIndex = g.op("Cast", [mask], { to: INT32 });
  const eps = { float: config.layerNormEps };

  const shapes = variant === "literal" ? literalShapes(g) : null;
  const slotShapes = variant === "fused" ? Array.from({ length: graphSlots }, (_, s) => (s < slots ? fusedShapes(g, s) : directShapes(g, s))) : [];
  const slotting =
    graphSlots > 1
      ? { order: g.input(SLOT_ORDER, INT64, ["BT"]), tokens: g.input(SLOT_TOKENS, INT64, [graphSlots]), unorder: g.input(SLOT_UNORDER, INT64, ["BT"]) }
      : null;
  const probsPerLayer: string[][] = Array.from({ length: graphSlots }, () => []);
  // Slot 0 always runs; the other slots run in groups, each only when one of its slots has tokens:
  // the other route slots, the first direct slot, the other direct slots.
  const slotGroups: { slots: number[]; active: string | null }[] = [{ slots: [0], active: null }];
  if (slotting) {
    const zero = g.ints("const.no_tokens", [0], []);
    const anyTokens = (slotsOf: number[]) =>
      g.op("Greater", [g.op("ReduceSum", [g.op("Slice", [slotting.tokens, g.ints(`const.slots${slotsOf[0]}.from`, [slotsOf[0]]), g.ints(`const.slots${slotsOf[0]}.to`, [slotsOf.at(-1)! + 1])])], { keepdims: 0 }), zero]);
    const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
    for (const group of [range(1, slots), range(slots, Math.min(slots + 1, graphSlots)), range(slots + 1, graphSlots)]) {
      if (group.length > 0 && group[0] > 0) slotGroups.push({ slots: group, active: anyTokens(group) });
    }
  }
  // What a skipped slot gives for its fusion weights: [1, 0], no adapter's weight for no token.
  const noProbs = slotting ? g.floats("const.no_probs", [1, 0], new Float32Array(0)) : null;

  backbone.layers.forEach((w, l) => {
    const p = `layer${l}`;
    const attended = products.attention(hidden, `${p}.qkv`, w.qkvWeight, w.qkvBias, maskIndex, config.numHeads);
    const { normed: h1 } = residualNorm(
      g,
      g.op("Add", [products.constant(attended, `${p}.ao.w`, w.attentionOutWeight), g.floats(`${p}.ao.b`, [d], w.attentionOutBias.data)]),
      hidden,
      g.floats(`${p}.ln1.gamma`, [d], w.attentionNormGamma.data),
      g.floats(`${p}.ln1.beta`, [d], w.attentionNormBeta.data),
      eps,
    );
    const inner = g.op(
      "BiasGelu",
      [
        products.constant(h1, `${p}.ffn_in.w`, w.intermediateWeight),
        g.floats(`${p}.ffn_in.b`, w.intermediateBias.shape, w.intermediateBias.data),
      ],
      {},
      "ms",
    );
    const ffnOut = products.constant(inner, `${p}.ffn_out.w`, w.outputWeight);
    const gamma = g.floats(`${p}.ln2.gamma`, [d], w.outputNormGamma.data);
    const beta = g.floats(`${p}.ln2.beta`, [d], w.outputNormBeta.data);
    // x = LN(f + h1) is the plain layer's output and the adapters' input, f the FFN output with
    // its bias; s = f + h1 is the residual the adapter or fusion output is added to before the
    // same LayerNorm again.
    const { normed: x, sum: s } = residualNorm(g, g.op("Add", [ffnOut, g.floats(`${p}.ffn_out.b`, [d], w.outputBias.data)]), h1, gamma, beta, eps);
    if (variant === "plain") {
      hidden = x;
      return;
    }
    const flat = g.op("Reshape", [x, g.shared("const.flat_hidden", () => g.ints("const.flat_hidden", [-1, d]))]);
    const axis0 = g.ints(`${p}.axis0`, [0]);
    let context: string;
    if (shapes) {
      const fusion = literalTail(g, routeInputs(l), flat, shapes, d);
      probsPerLayer[0].push(g.op("Unsqueeze", [fusion.probs, axis0]));
      context = fusion.context;
    } else {
      const parts = slotting ? g.node("Split", [g.op("Gather", [flat, slotting.order], { axis: 0 }), slotting.tokens], { axis: 0 }, { outputs: graphSlots }) : [flat];
      const tail = (slot: number): FusionOutput => {
        const shapes = slotShapes[slot];
        return "split" in shapes ? fusedTail(g, products, slotNames(l, slot), parts[slot], shapes, d) : directTail(g, directSlotNames(l, slot), parts[slot], shapes, d);
      };
      const contexts = slotGroups.map((group) => {
        const [first, last] = [group.slots[0], group.slots.at(-1)!];
        const concat = (names: string[]) => (names.length > 1 ? g.op("Concat", names, { axis: 0 }) : g.op("Identity", names));
        if (!group.active) {
          const fusion = tail(first);
          probsPerLayer[first].push(g.op("Unsqueeze", [fusion.probs, axis0]));
          return fusion.context;
        }
        // Slots with no tokens skip their kernels altogether: a pass of one route runs none of the others'.
        const run = g.subgraph(`${p}.slots${first}-${last}.run`, () => {
          const fusions = group.slots.map(tail);
          return [concat(fusions.map((f) => f.context)), ...fusions.map((f) => g.op("Identity", [f.probs]))];
        });
        const skip = g.subgraph(`${p}.slots${first}-${last}.skip`, () => [concat(group.slots.map((slot) => parts[slot])), ...group.slots.map(() => g.op("Identity", [noProbs!]))]);
        const [groupContext, ...probs] = g.node("If", [group.active], { then_branch: run, else_branch: skip }, { outputs: 1 + group.slots.length });
        group.slots.forEach((slot, i) => probsPerLayer[slot].push(g.op("Unsqueeze", [probs[i], axis0])));
        return groupContext;
      });
      context = slotting ? g.op("Gather", [g.op("Concat", contexts, { axis: 0 }), slotting.unorder], { axis: 0 }) : contexts[0];
    }
    hidden = residualNorm(g, g.op("Reshape", [context, g.op("Shape", [x])]), s, gamma, beta, eps).normed;
  });

  const probs = variant === "plain" ? [] : probsPerLayer.map((layers) => g.op("Concat", layers, { axis: 0 }));
  return { hidden, probs };
}

/**
 * Position embeddings, [T, d] (BERT, DistilBERT: rows 0 … T−1) or [B, T, d] (RoBERTa, XLM-R). RoBERTa
 * numbers a row's positions from its ids: p = padding_idx + cumsum(real)·real, real = (id ≠ padding
 * id). Here real also requires the attention mask, so a padded position is padding_idx whatever id
 * the batch pads with, and never outside the table. A real token whose id is the padding id (a
 * literal "<pad>" in the text) sits at padding_idx and is not counted, as in the library.
 */
function positionEmbeddings(g: OnnxGraph, backbone: Backbone, ids: string, mask: string, seqLen: string): string {
  const table = g.floats("embeddings.position", backbone.positionEmbeddings.shape, backbone.positionEmbeddings.data);
  const paddingIdx = backbone.config.positionPaddingIdx;
  if (paddingIdx === undefined) return g.op("Slice", [table, g.ints("const.zero", [0]), seqLen, g.ints("const.axis0", [0])]);
  const padding = g.ints("const.padding_idx", [paddingIdx]);
  const real = g.op("Mul", [g.op("Cast", [g.op("Not", [g.op("Equal", [ids, padding])])], { to: INT64 }), mask]);
  const counted = g.op("CumSum", [real, g.ints("const.cumsum_axis", [1], [])]);
  return g.op("Gather", [table, g.op("Add", [g.op("Mul", [counted, real]), padding])]);
}

/**
 * LN(branch + residual) and the sum, as Add and LayerNormalization rather than com.microsoft
 * SkipLayerNormalization: ONNX Runtime 1.30's CPU SkipLayerNormalization takes 2.0–2.1 ms on a
 * [32, 64, 384] input where the two Adds and LayerNormalization take 0.35–0.5 ms
 * (bench/experiments/layernorm-kernels.ts), and a layer has two or three of them. The engine
 * turns off ONNX Runtime's SkipLayerNormFusion, which would otherwise fuse this form back.
 */
function residualNorm(g: OnnxGraph, branch: string, residual: string, gamma: string, beta: string, epsilon: { float: number }) {
  const sum = g.op("Add", [branch, residual]);
  return { normed: g.op("LayerNormalization", [sum, gamma, beta], { axis: -1, epsilon }), sum };
}

type Names = ReturnType<typeof routeInputs>;

function slotNames(l: number, slot: number): Names {
  return Object.fromEntries(Object.entries(routeInputs(l)).map(([key, name]) => [key, slotInput(name, slot)])) as Names;
}

type DirectNames = ReturnType<typeof directInputs>;

function directSlotNames(l: number, slot: number): DirectNames {
  return Object.fromEntries(Object.entries(directInputs(l)).map(([key, name]) => [key, slotInput(name, slot)])) as DirectNames;
}

interface FusionOutput {
  readonly context: string; // [B·T, d]
  readonly probs: string; // [N, B·T]
}

/** Shapes shared by every layer of a slot, derived once from its layer 0 inputs: K + N rows of out_w, 2K + N of in_b. */
function fusedShapes(g: OnnxGraph, slot: number) {
  const l0 = slotNames(0, slot);
  const kn = g.op("Shape", [l0.outWeight], { start: 0, end: 1 });
  const k = g.op("Sub", [g.op("Shape", [l0.inBias]), kn]);
  const n = g.op("Sub", [kn, k]);
  const minus1 = g.shared("const.minus1", () => g.ints("const.minus1", [-1]));
  return {
    split: g.op("Concat", [k, k, n], { axis: 0 }),
    perAdapter: g.op("Concat", [minus1, n, g.op("Div", [k, n])], { axis: 0 }), // [B·T, N, R]
    flatBottleneck: g.op("Concat", [minus1, k], { axis: 0 }), // [B·T, K]
  };
}

/**
 * Fusion in the bottleneck space. With h_i = relu(x·W_down_i + b_down_i) (R values) and
 * u_i = h_i·W_up_i + b_up_i, everything the fusion needs is linear in h_i:
 *   r·u_i = h_i·(W_up_i·rᵀ) + b_up_i·r,  r = x·M + m  (M = W_qᵀW_k, m = b_q W_k: docs/design.md §2)
 *   (Σ_i p_i u_i)·W_v = [p⊙h | p]·[W_up·W_v ; b_up·W_v]
 * so one GEMM x·in_w yields the down projections and every score term, and one GEMM ·out_w the
 * valued mix; the d×d score and value products are folded into in_w and out_w when the route is
 * assembled. Per token and layer that is 3·K·d + 2·N·d multiply-adds, K = N·R, instead of
 * 2·d² + 2·K·d plus passes over an [N, B·T, d] tensor.
 */
function fusedTail(g: OnnxGraph, products: MatrixProducts, names: Names, x: string, shapes: ReturnType<typeof fusedShapes>, d: number): FusionOutput {
  const projected = products.input(x, names.inWeight, [d, "IN"], names.inBias);
  const [down, scoreTerms, scoreBias] = g.node("Split", [projected, shapes.split], { axis: 1 }, { outputs: 3 });
  const h = g.op("Reshape", [g.op("Relu", [down]), shapes.perAdapter]);
  const scored = g.op("Mul", [h, g.op("Reshape", [scoreTerms, shapes.perAdapter])]);
  const probs = g.op("Softmax", [g.op("Add", [g.op("ReduceSum", [scored, g.ints(`${names.inWeight}.axes`, [2])], { keepdims: 0 }), scoreBias])], { axis: -1 });
  const weighted = g.op("Reshape", [g.op("Mul", [h, g.op("Unsqueeze", [probs, g.ints(`${names.outWeight}.axes`, [2])])]), shapes.flatBottleneck]);
  const context = products.input(g.op("Concat", [weighted, probs], { axis: 1 }), names.outWeight, ["OUT", d]);
  return { context, probs: g.op("Transpose", [probs], { perm: [1, 0] }) };
}

/** Shapes shared by every layer of a direct slot, from its layer 0 inputs: N and R of down_w, K of down_b. */
function directShapes(g: OnnxGraph, slot: number) {
  const l0 = directSlotNames(0, slot);
  const n = g.op("Shape", [l0.downWeight], { start: 0, end: 1 });
  const r = g.op("Shape", [l0.downWeight], { start: 2, end: 3 });
  const k = g.op("Shape", [l0.downBias]);
  const minus1 = g.shared("const.minus1", () => g.ints("const.minus1", [-1]));
  return {
    scoreSplit: g.op("Concat", [k, n], { axis: 0 }),
    perAdapter: g.op("Concat", [minus1, n, r], { axis: 0 }), // [B·T, N, R]
    flatBottleneck: g.op("Concat", [minus1, k], { axis: 0 }), // [B·T, K]
  };
}

/**
 * The fusion straight from the route's modules, for a route whose folded layout (fusedTail) is not
 * resident: the same products as fusedTail's, associated per token instead of per route,
 *   r = x·M + m,  [t | e] = r·[W_up ; b_up]ᵀ,  c = ([p⊙h | p]·[W_up ; b_up])·W_vᵀ,
 * so nothing has to be computed before the route's first pass (M and m are the fusion's, formed
 * when it was read). That costs 2·d² multiply-adds per token and layer more than the folded form,
 * and the fold's 2·d²·(K + N) per layer less.
 */
function directTail(g: OnnxGraph, names: DirectNames, x: string, shapes: ReturnType<typeof directShapes>, d: number): FusionOutput {
  // [N, B·T, R]: one product per adapter, against its own block of down_w.
  const perAdapterDown = g.op("MatMul", [x, g.input(names.downWeight, FLOAT, ["N", d, "R"])]);
  const down = g.op("Add", [g.op("Reshape", [g.op("Transpose", [perAdapterDown], { perm: [1, 0, 2] }), shapes.flatBottleneck]), g.input(names.downBias, FLOAT, ["K"])]);
  const h = g.op("Reshape", [g.op("Relu", [down]), shapes.perAdapter]);
  const up = g.input(names.up, FLOAT, ["KN", d]);
  const r = g.op("Gemm", [x, g.input(names.scoreWeight, FLOAT, [d, d]), g.input(names.scoreBias, FLOAT, [d])]);
  const [scoreTerms, scoreBias] = g.node("Split", [g.op("Gemm", [r, up], { transB: 1 }), shapes.scoreSplit], { axis: 1 }, { outputs: 2 });
  const scored = g.op("Mul", [h, g.op("Reshape", [scoreTerms, shapes.perAdapter])]);
  const probs = g.op("Softmax", [g.op("Add", [g.op("ReduceSum", [scored, g.ints(`${names.downBias}.axes`, [2])], { keepdims: 0 }), scoreBias])], { axis: -1 });
  const weighted = g.op("Reshape", [g.op("Mul", [h, g.op("Unsqueeze", [probs, g.ints(`${names.up}.axes`, [2])])]), shapes.flatBottleneck]);
  const mix = g.op("MatMul", [g.op("Concat", [weighted, probs], { axis: 1 }), up]);
  const context = g.op("Gemm", [mix, g.input(names.valueWeight, FLOAT, [d, d])], { transB: 1 });
  return { context, probs: g.op("Transpose", [probs], { perm: [1, 0] }) };
}

function literalShapes(g: OnnxGraph) {
  const nr = g.op("Shape", [routeInputs(0).upWeight], { start: 0, end: 2 });
  return {
    bottleneck: g.op("Concat", [g.ints("const.minus1", [-1]), nr], { axis: 0 }),
  };
}

/** The library's formula: u_i for every adapter, q = W_q x + b_q, k_i = W_k u_i + b_k, c = Σ p_i W_v u_i. */
function literalTail(g: OnnxGraph, names: Names, x: string, shapes: ReturnType<typeof literalShapes>, d: number): FusionOutput {
  const down = g.op("Relu", [g.op("Add", [g.op("MatMul", [x, g.input(names.downWeight, FLOAT, [d, "NR"])]), g.input(names.downBias, FLOAT, ["NR"])])]);
  const perAdapter = g.op("Transpose", [g.op("Reshape", [down, shapes.bottleneck])], { perm: [1, 0, 2] });
  const up = g.op("Add", [g.op("MatMul", [perAdapter, g.input(names.upWeight, FLOAT, ["N", "R", d])]), g.input(names.upBias, FLOAT, ["N", 1, d])]);
  const q = g.op("Add", [g.op("MatMul", [x, g.input(names.queryWeight, FLOAT, [d, d])]), g.input(names.queryBias, FLOAT, [d])]);
  const k = g.op("Add", [g.op("MatMul", [up, g.input(names.keyWeight, FLOAT, [d, d])]), g.input(names.keyBias, FLOAT, [d])]);
  const probs = g.op("Softmax", [g.op("ReduceSum", [g.op("Mul", [k, q]), g.ints(`${names.keyWeight}.axes`, [2])], { keepdims: 1 })], { axis: 0 });
  const values = g.op("MatMul", [up, g.input(names.valueWeight, FLOAT, [d, d])]);
  const context = g.op("ReduceSum", [g.op("Mul", [values, probs]), g.ints(`${names.valueWeight}.axes`, [0])], { keepdims: 0 });
  return { context, probs: g.op("Squeeze", [probs, g.ints(`${names.queryWeight}.axes`, [2])]) };
}
