import type { Backbone } from "./backbone.js";
import { FLOAT, INT32, INT64, OnnxGraph } from "./onnx/graph.js";

/**
 * Which computation follows each layer's FFN:
 * - `plain`: the backbone alone, no adapter inputs at all;
 * - `fused`: every adapter of the route in one pass, fusion in its rewritten form (DESIGN.md §2);
 * - `literal`: the same adapters, fusion as the library writes it (keys and values per adapter),
 *   kept to check the rewrite and to measure what it saves.
 */
export type GraphVariant = "plain" | "fused" | "literal";

/** Names of the per-route graph inputs of layer `l`; shapes in comments (N adapters, R bottleneck). */
export const routeInputs = (l: number) => ({
  downWeight: `l${l}.down_w`, // [d, N·R]
  downBias: `l${l}.down_b`, // [N·R]
  upWeight: `l${l}.up_w`, // [N, R, d]
  upBias: `l${l}.up_b`, // [N, 1, d]
  scoreWeight: `l${l}.score_w`, // fused: [d, d] = W_qᵀ W_k
  scoreBias: `l${l}.score_b`, // fused: [d] = b_q W_k
  valueWeight: `l${l}.value_w`, // [d, d] = W_vᵀ (identity where the fusion has no value)
  queryWeight: `l${l}.query_w`, // literal: [d, d]
  queryBias: `l${l}.query_b`, // literal: [d]
  keyWeight: `l${l}.key_w`, // literal: [d, d]
  keyBias: `l${l}.key_b`, // literal: [d]
});

export const GRAPH_OUTPUTS = { hidden: "last_hidden_state", fusionProbs: "fusion_probs" } as const;

/**
 * Builds the ONNX graph for a post-LayerNorm BERT encoder. The backbone's weights are
 * initializers (held once by the session); adapter and fusion weights are graph inputs, so one
 * session serves every route and the library can change without rebuilding it.
 *
 * Outputs: last_hidden_state [B, T, d]; for adapter variants also fusion_probs [L, N, B·T].
 */
export function buildBertGraph(backbone: Backbone, variant: GraphVariant): Uint8Array {
  const { config } = backbone;
  const d = config.hiddenSize;
  const g = new OnnxGraph();

  const ids = g.input("input_ids", INT64, ["B", "T"]);
  const mask = g.input("attention_mask", INT64, ["B", "T"]);

  const seqLen = g.op("Shape", [ids], { start: 1, end: 2 });
  const positions = g.op("Slice", [
    g.floats("embeddings.position", backbone.positionEmbeddings.shape, backbone.positionEmbeddings.data),
    g.ints("const.zero", [0]),
    seqLen,
    g.ints("const.axis0", [0]),
  ]);
  const positionAndType = g.op("Add", [positions, g.floats("embeddings.token_type0", [d], backbone.tokenTypeRow.data)]);
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

  const adapters = variant === "plain" ? null : adapterShapes(g, d);
  const probsPerLayer: string[] = [];

  backbone.layers.forEach((w, l) => {
    const p = `layer${l}`;
    const context = g.op(
      "Attention",
      [hidden, g.floats(`${p}.qkv.w`, w.qkvWeight.shape, w.qkvWeight.data), g.floats(`${p}.qkv.b`, w.qkvBias.shape, w.qkvBias.data), maskIndex],
      { num_heads: config.numHeads },
      "ms",
    );
    const [h1] = g.node(
      "SkipLayerNormalization",
      [
        g.op("MatMul", [context, g.floats(`${p}.ao.w`, w.attentionOutWeight.shape, w.attentionOutWeight.data)]),
        hidden,
        g.floats(`${p}.ln1.gamma`, [d], w.attentionNormGamma.data),
        g.floats(`${p}.ln1.beta`, [d], w.attentionNormBeta.data),
        g.floats(`${p}.ao.b`, [d], w.attentionOutBias.data),
      ],
      { epsilon: eps },
      { domain: "ms" },
    );
    const inner = g.op(
      "BiasGelu",
      [
        g.op("MatMul", [h1, g.floats(`${p}.ffn_in.w`, w.intermediateWeight.shape, w.intermediateWeight.data)]),
        g.floats(`${p}.ffn_in.b`, w.intermediateBias.shape, w.intermediateBias.data),
      ],
      {},
      "ms",
    );
    const ffnOut = g.op("MatMul", [inner, g.floats(`${p}.ffn_out.w`, w.outputWeight.shape, w.outputWeight.data)]);
    const gamma = g.floats(`${p}.ln2.gamma`, [d], w.outputNormGamma.data);
    const beta = g.floats(`${p}.ln2.beta`, [d], w.outputNormBeta.data);
    // x = LN(f + h1) is the plain layer's output and the adapters' input; s = f + h1 is the
    // residual the adapter or fusion output is added to before the same LayerNorm again.
    const x = `${p}.x`;
    const s = `${p}.residual`;
    g.node(
      "SkipLayerNormalization",
      [ffnOut, h1, gamma, beta, g.floats(`${p}.ffn_out.b`, [d], w.outputBias.data)],
      { epsilon: eps },
      { domain: "ms", outputs: [x, "", "", s] },
    );
    if (!adapters) {
      hidden = x;
      return;
    }
    const names = routeInputs(l);
    const flat = g.op("Reshape", [x, adapters.flatHidden]);
    const down = g.op("Relu", [g.op("Add", [g.op("MatMul", [flat, g.input(names.downWeight, FLOAT, [d, "NR"])]), g.input(names.downBias, FLOAT, ["NR"])])]);
    const perAdapter = g.op("Transpose", [g.op("Reshape", [down, adapters.bottleneckShape])], { perm: [1, 0, 2] });
    const up = g.op("Add", [
      g.op("MatMul", [perAdapter, g.input(names.upWeight, FLOAT, ["N", "R", d])]),
      g.input(names.upBias, FLOAT, ["N", 1, d]),
    ]);
    const fusion = variant === "fused" ? rewrittenFusion(g, names, flat, up, d) : literalFusion(g, names, flat, up, d);
    probsPerLayer.push(g.op("Unsqueeze", [g.op("Squeeze", [fusion.probs, g.ints(`${p}.axis2`, [2])]), g.ints(`${p}.axis0`, [0])]));
    const [out] = g.node(
      "SkipLayerNormalization",
      [g.op("Reshape", [fusion.context, g.op("Shape", [x])]), s, gamma, beta],
      { epsilon: eps },
      { domain: "ms" },
    );
    hidden = out;
  });

  g.node("Identity", [hidden], {}, { outputs: [GRAPH_OUTPUTS.hidden] });
  g.output(GRAPH_OUTPUTS.hidden, FLOAT, ["B", "T", d]);
  if (adapters) {
    g.node("Concat", probsPerLayer, { axis: 0 }, { outputs: [GRAPH_OUTPUTS.fusionProbs] });
    g.output(GRAPH_OUTPUTS.fusionProbs, FLOAT, [config.numLayers, "N", "BT"]);
  }
  return g.toBytes(`bert-${variant}`);
}

/** Shapes shared by every layer, derived once from layer 0's up-projection input [N, R, d]. */
function adapterShapes(g: OnnxGraph, d: number) {
  const nr = g.op("Shape", [routeInputs(0).upWeight], { start: 0, end: 2 });
  return {
    flatHidden: g.ints("const.flat_hidden", [-1, d]),
    bottleneckShape: g.op("Concat", [g.ints("const.minus1", [-1]), nr], { axis: 0 }),
  };
}

interface FusionOutput {
  readonly context: string; // [B·T, d]
  readonly probs: string; // [N, B·T, 1]
}

/** p = softmax_i(r · u_i), r = x·(W_qᵀW_k) + b_q W_k; c = (Σ p_i u_i)·W_vᵀ. */
function rewrittenFusion(g: OnnxGraph, names: ReturnType<typeof routeInputs>, x: string, up: string, d: number): FusionOutput {
  const r = g.op("Add", [g.op("MatMul", [x, g.input(names.scoreWeight, FLOAT, [d, d])]), g.input(names.scoreBias, FLOAT, [d])]);
  const probs = g.op("Softmax", [g.op("ReduceSum", [g.op("Mul", [up, r]), g.ints(`${names.scoreWeight}.axes`, [2])], { keepdims: 1 })], { axis: 0 });
  const mixed = g.op("ReduceSum", [g.op("Mul", [up, probs]), g.ints(`${names.valueWeight}.axes`, [0])], { keepdims: 0 });
  return { context: g.op("MatMul", [mixed, g.input(names.valueWeight, FLOAT, [d, d])]), probs };
}

/** The library's formula: q = W_q x + b_q, k_i = W_k u_i + b_k, c = Σ p_i W_v u_i. */
function literalFusion(g: OnnxGraph, names: ReturnType<typeof routeInputs>, x: string, up: string, d: number): FusionOutput {
  const q = g.op("Add", [g.op("MatMul", [x, g.input(names.queryWeight, FLOAT, [d, d])]), g.input(names.queryBias, FLOAT, [d])]);
  const k = g.op("Add", [g.op("MatMul", [up, g.input(names.keyWeight, FLOAT, [d, d])]), g.input(names.keyBias, FLOAT, [d])]);
  const probs = g.op("Softmax", [g.op("ReduceSum", [g.op("Mul", [k, q]), g.ints(`${names.keyWeight}.axes`, [2])], { keepdims: 1 })], { axis: 0 });
  const values = g.op("MatMul", [up, g.input(names.valueWeight, FLOAT, [d, d])]);
  return { context: g.op("ReduceSum", [g.op("Mul", [values, probs]), g.ints(`${names.valueWeight}.axes`, [0])], { keepdims: 0 }), probs };
}
