/**
 * Bench-only prototype of a cheaper fused graph (proposed for src/engine/bert-graph.ts and
 * src/library/route.ts; see bench/README.md "Proposed engine change"). The backbone part is a copy
 * of buildBertGraph; only what follows each layer's FFN differs.
 *
 * The shipped `fused` graph materializes every adapter's output u_i = h_i·Wu_i + bu_i as an
 * [N, B·T, d] tensor and makes about eight passes over it per layer (up MatMul, bias Add, Mul by r,
 * ReduceSum, Mul by p, ReduceSum, ...). Everything fusion needs from u_i is linear in the bottleneck
 * activation h_i = relu(x·Wd_i + bd_i) (r values per adapter), so it can stay in that space:
 *
 *   score_i = r·u_i = h_i·(Wu_i·rᵀ) + bu_i·r,   r = x·M + m
 *           = Σ_j h_i[j]·t_i[j] + c_i,  with  t = x·(M·Wuᵀ) + m·Wuᵀ  [K = N·R],  c = x·(M·buᵀ) + m·buᵀ  [N]
 *   p       = softmax_i(score_i)
 *   out     = (Σ_i p_i u_i)·Wv = [p⊙h | p] · [Wu·Wv ; bu·Wv]
 *
 * so one GEMM x·[Wd | M·Wuᵀ | M·buᵀ] (d × (2K+N)) gives the down projection and every score term,
 * and one GEMM [p⊙h | p]·[Wu·Wv ; bu·Wv] ((K+N) × d) gives the fused, valued output. The d×d score
 * and value GEMMs fold into these at route assembly, and nothing of size N·d per token exists.
 * Per token and layer: 3·N·R·d + 2·N·d multiply-adds instead of 2·d² + 2·N·R·d plus the N·d passes.
 */
import ort from "onnxruntime-node";
import type { Backbone } from "../../src/engine/backbone.js";
import { GRAPH_OUTPUTS, routeInputs } from "../../src/engine/bert-graph.js";
import type { RouteFeeds } from "../../src/engine/engine.js";
import { FLOAT, INT32, INT64, OnnxGraph } from "../../src/engine/onnx/graph.js";

export const protoInputs = (l: number) => ({
  inWeight: `l${l}.in_w`, // [d, 2K + N] = [Wd | M·Wuᵀ | M·buᵀ]
  inBias: `l${l}.in_b`, // [2K + N] = [bd | m·Wuᵀ | m·buᵀ]
  outWeight: `l${l}.out_w`, // [K + N, d] = [Wu·Wv ; bu·Wv]
});

export function buildBottleneckGraph(backbone: Backbone): Uint8Array {
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
    [g.op("Add", [words, positionAndType]), g.floats("embeddings.ln.gamma", [d], backbone.embeddingNormGamma.data), g.floats("embeddings.ln.beta", [d], backbone.embeddingNormBeta.data)],
    { axis: -1, epsilon: { float: config.layerNormEps } },
  );
  const maskIndex = g.op("Cast", [mask], { to: INT32 });
  const eps = { float: config.layerNormEps };

  // Sizes, once: 2K+N from in_b, K+N from out_w → K, N, R = K / N.
  const l0 = protoInputs(0);
  const twoKN = g.op("Shape", [l0.inBias]);
  const kn = g.op("Shape", [l0.outWeight], { start: 0, end: 1 });
  const K = g.op("Sub", [twoKN, kn]);
  const N = g.op("Sub", [kn, K]);
  const R = g.op("Div", [K, N]);
  const splitSizes = g.op("Concat", [K, K, N], { axis: 0 });
  const minus1 = g.ints("const.minus1", [-1]);
  const perAdapterShape = g.op("Concat", [minus1, N, R], { axis: 0 }); // [BT, N, R]
  const flatK = g.op("Concat", [minus1, K], { axis: 0 }); // [BT, K]
  const flatHidden = g.ints("const.flat_hidden", [-1, d]);
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
      [g.op("MatMul", [h1, g.floats(`${p}.ffn_in.w`, w.intermediateWeight.shape, w.intermediateWeight.data)]), g.floats(`${p}.ffn_in.b`, w.intermediateBias.shape, w.intermediateBias.data)],
      {},
      "ms",
    );
    const ffnOut = g.op("MatMul", [inner, g.floats(`${p}.ffn_out.w`, w.outputWeight.shape, w.outputWeight.data)]);
    const gamma = g.floats(`${p}.ln2.gamma`, [d], w.outputNormGamma.data);
    const beta = g.floats(`${p}.ln2.beta`, [d], w.outputNormBeta.data);
    const x = `${p}.x`;
    const s = `${p}.residual`;
    g.node("SkipLayerNormalization", [ffnOut, h1, gamma, beta, g.floats(`${p}.ffn_out.b`, [d], w.outputBias.data)], { epsilon: eps }, { domain: "ms", outputs: [x, "", "", s] });

    const names = protoInputs(l);
    const flat = g.op("Reshape", [x, flatHidden]);
    const all = g.op("Add", [g.op("MatMul", [flat, g.input(names.inWeight, FLOAT, [d, "IN"])]), g.input(names.inBias, FLOAT, ["IN"])]);
    const [downPre, t, c] = g.node("Split", [all, splitSizes], { axis: 1 }, { outputs: 3 });
    const h = g.op("Reshape", [g.op("Relu", [downPre]), perAdapterShape]); // [BT, N, R]
    const scores = g.op("Add", [g.op("ReduceSum", [g.op("Mul", [h, g.op("Reshape", [t, perAdapterShape])]), g.ints(`${p}.axis2`, [2])], { keepdims: 0 }), c]);
    const probs = g.op("Softmax", [scores], { axis: -1 }); // [BT, N]
    const weighted = g.op("Reshape", [g.op("Mul", [h, g.op("Unsqueeze", [probs, g.ints(`${p}.axisU`, [2])])]), flatK]);
    const mixed = g.op("MatMul", [g.op("Concat", [weighted, probs], { axis: 1 }), g.input(names.outWeight, FLOAT, ["OUT", d])]);
    probsPerLayer.push(g.op("Unsqueeze", [g.op("Transpose", [probs], { perm: [1, 0] }), g.ints(`${p}.axis0`, [0])]));
    const [out] = g.node("SkipLayerNormalization", [g.op("Reshape", [mixed, g.op("Shape", [x])]), s, gamma, beta], { epsilon: eps }, { domain: "ms" });
    hidden = out;
  });

  g.node("Identity", [hidden], {}, { outputs: [GRAPH_OUTPUTS.hidden] });
  g.output(GRAPH_OUTPUTS.hidden, FLOAT, ["B", "T", d]);
  g.node("Concat", probsPerLayer, { axis: 0 }, { outputs: [GRAPH_OUTPUTS.fusionProbs] });
  g.output(GRAPH_OUTPUTS.fusionProbs, FLOAT, [config.numLayers, "N", "BT"]);
  return g.toBytes("bert-bottleneck");
}

/** a [n, k] · b [k, m], float64 accumulation. */
function mm(a: Float32Array, b: Float32Array, n: number, k: number, m: number): Float32Array {
  const out = new Float32Array(n * m);
  const row = new Float64Array(m);
  for (let i = 0; i < n; i++) {
    row.fill(0);
    for (let j = 0; j < k; j++) {
      const v = a[i * k + j];
      if (v === 0) continue;
      for (let c = 0; c < m; c++) row[c] += v * b[j * m + c];
    }
    out.set(row, i * m);
  }
  return out;
}

/** The prototype's inputs, derived from a `fused` route's feeds (as route.ts would build them). */
export function bottleneckFeeds(fused: RouteFeeds, numLayers: number): RouteFeeds {
  const feeds: Record<string, ort.Tensor> = {};
  for (let l = 0; l < numLayers; l++) {
    const f = routeInputs(l);
    const get = (key: string) => fused[key].data as Float32Array;
    const [d, K] = fused[f.downWeight].dims as number[];
    const N = fused[f.upWeight].dims[0] as number;
    const Wd = get(f.downWeight); // [d, K]
    const bd = get(f.downBias); // [K]
    const Wu = get(f.upWeight); // [N, R, d] = [K, d]
    const bu = get(f.upBias); // [N, 1, d] = [N, d]
    const M = get(f.scoreWeight); // [d, d]
    const m = get(f.scoreBias); // [d]
    const Wv = get(f.valueWeight); // [d, d]
    const transpose = (a: Float32Array, rows: number, cols: number) => {
      const o = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) o[c * rows + r] = a[r * cols + c];
      return o;
    };
    const WuT = transpose(Wu, K, d); // [d, K]
    const buT = transpose(bu, N, d); // [d, N]
    const G = mm(M, WuT, d, d, K); // [d, K]
    const H = mm(M, buT, d, d, N); // [d, N]
    const g = mm(m, WuT, 1, d, K);
    const hb = mm(m, buT, 1, d, N);
    const width = 2 * K + N;
    const inW = new Float32Array(d * width);
    for (let r = 0; r < d; r++) {
      inW.set(Wd.subarray(r * K, (r + 1) * K), r * width);
      inW.set(G.subarray(r * K, (r + 1) * K), r * width + K);
      inW.set(H.subarray(r * N, (r + 1) * N), r * width + 2 * K);
    }
    const inB = new Float32Array(width);
    inB.set(bd, 0);
    inB.set(g, K);
    inB.set(hb, 2 * K);
    const outW = new Float32Array((K + N) * d);
    outW.set(mm(Wu, Wv, K, d, d), 0);
    outW.set(mm(bu, Wv, N, d, d), K * d);
    const names = protoInputs(l);
    feeds[names.inWeight] = new ort.Tensor("float32", inW, [d, width]);
    feeds[names.inBias] = new ort.Tensor("float32", inB, [width]);
    feeds[names.outWeight] = new ort.Tensor("float32", outW, [K + N, d]);
  }
  return feeds;
}
