import { join } from "node:path";
import t from "tap";
import type { BackboneConfig } from "../../src/engine/backbone.js";
import { routeInputs } from "../../src/engine/bert-graph.js";
import { FusionEngine, type ForwardResult } from "../../src/engine/engine.js";
import { loadBackbone } from "../../src/engine/backbone.js";
import { padBatch } from "../../src/engine/packing.js";
import type { Tensor } from "../../src/formats/safetensors.js";
import { loadAdapter, loadFusion, type AdapterModule, type FusionModule } from "../../src/library/adapterhub.js";
import { folderOfThisThread } from "../../src/engine/fold.js";
import type { SavedFusionLayer } from "../../src/engine/weights.js";
import { routeFeeds } from "../../src/engine/layout.js";
import { ENGINE_FIXTURES, TINY_BACKBONE, expectedOutputs, maxAbsDiff, parityCases } from "../fixtures.js";

/**
 * Acceptance 3 of issue 2: the rewritten fusion of docs/design.md §2 (graph variant "fused":
 * p = softmax_i(r · u_i), r = x·W_qᵀW_k + b_q W_k, c = (Σ p_i u_i) W_vᵀ) equals the literal
 * formula (variant "literal": q = W_q x + b_q, k_i = W_k u_i + b_k, c = Σ p_i W_v u_i) to 1e-4.
 */

const TOLERANCE = 1e-4;

// ---------------------------------------------------------------------------------------------
// 1. Whole graphs: the same routes and inputs through the "fused" and the "literal" session.
// ---------------------------------------------------------------------------------------------

const backbone = await loadBackbone(TINY_BACKBONE);
const d = backbone.config.hiddenSize;
const L = backbone.config.numLayers;
const engines = {
  fused: await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused" }),
  literal: await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "literal" }),
};
t.teardown(() => Promise.all(Object.values(engines).map((e) => e.close())));

const adapterCache = new Map<string, Promise<AdapterModule>>();
const adapter = (name: string) => {
  if (!adapterCache.has(name)) adapterCache.set(name, loadAdapter(join(ENGINE_FIXTURES, "adapters", name), backbone.config));
  return adapterCache.get(name)!;
};

/** The fixture's batch of 8 inputs of different lengths (padding), and one more of random ids. */
function inputBatches(): { label: string; sequences: number[][] }[] {
  const c = parityCases().find((c) => c.name === "dyn5_batch8")!;
  const { ids, mask } = expectedOutputs(c);
  const fixture = ids.map((row, b) => row.filter((_, i) => mask[b][i] === 1));
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const vocab = backbone.config.vocabSize;
  const random = [3, 17, 40, 1, 29].map((len) => [2, ...Array.from({ length: len }, () => 5 + Math.floor(rand() * (vocab - 5))), 3]);
  return [
    { label: "fixture batch of 8", sequences: fixture },
    { label: "batch of 1", sequences: [fixture[0]] },
    { label: "random ids, 5 lengths", sequences: random },
  ];
}

/** Max |diff| of hidden states and of fusion probabilities over the real (unpadded) tokens. */
function compare(fused: ForwardResult, literal: ForwardResult, lengths: readonly number[], seqLen: number) {
  let hidden = 0;
  let probs = 0;
  let maxProb = 0;
  let tokens = 0;
  const B = lengths.length;
  const N = fused.fusionProbs!.adapters;
  lengths.forEach((len, b) => {
    const span = [b * seqLen * d, (b * seqLen + len) * d];
    hidden = Math.max(hidden, maxAbsDiff(fused.hidden.subarray(span[0], span[1]), literal.hidden.subarray(span[0], span[1])));
    for (let l = 0; l < L; l++) {
      for (let tok = 0; tok < len; tok++) {
        let best = 0;
        for (let i = 0; i < N; i++) {
          const at = (l * N + i) * B * seqLen + b * seqLen + tok;
          probs = Math.max(probs, Math.abs(fused.fusionProbs!.data[at] - literal.fusionProbs!.data[at]));
          best = Math.max(best, fused.fusionProbs!.data[at]);
        }
        maxProb += best;
        tokens++;
      }
    }
  });
  return { hidden, probs, meanMaxProb: maxProb / tokens };
}

const ROUTES = [
  { fusion: "dyn5", adapters: ["a1", "a2", "a3", "a4", "a5"] },
  { fusion: "static5", adapters: ["a1", "a2", "a3", "a4", "a5"] },
  { fusion: "dyn2", adapters: ["a1", "a2"] },
];

for (const spec of ROUTES) {
  t.test(`${spec.fusion}: rewritten fusion ("fused" graph) equals the literal formula to ${TOLERANCE}`, async (t) => {
    const adapters = await Promise.all(spec.adapters.map(adapter));
    const fusion = await loadFusion(join(ENGINE_FIXTURES, "fusions", spec.fusion), backbone.config);
    t.equal(fusion.kind, spec.fusion.startsWith("dyn") ? "dynamic" : "static");
    t.ok(new Set(adapters.map((a) => a.layers[0]!.downBias.shape[0])).size > 1, "the route mixes reduction factors (zero-padded bottlenecks)");
    const fusedFeeds = await routeFeeds(backbone.config, { adapters, fusion }, "fused");
    const literalFeeds = await routeFeeds(backbone.config, { adapters, fusion }, "literal");
    for (const { label, sequences } of inputBatches()) {
      const batch = padBatch(sequences);
      const [fused, literal] = await Promise.all([engines.fused.run(batch, fusedFeeds), engines.literal.run(batch, literalFeeds)]);
      t.equal(fused.fusionProbs!.adapters, spec.adapters.length, `${label}: one probability per adapter`);
      const diff = compare(fused, literal, batch.lengths, batch.seqLen);
      t.comment(
        `${label}: max |diff| hidden ${diff.hidden.toExponential(2)}, fusion p ${diff.probs.toExponential(2)}; ` +
          `mean max p ${diff.meanMaxProb.toFixed(3)} (uniform ${(1 / spec.adapters.length).toFixed(3)})`,
      );
      t.ok(diff.hidden <= TOLERANCE, `${label}: last hidden state within ${TOLERANCE} (${diff.hidden.toExponential(2)})`);
      t.ok(diff.probs <= TOLERANCE, `${label}: fusion probabilities within ${TOLERANCE} (${diff.probs.toExponential(2)})`);
      t.ok(diff.meanMaxProb > 1.2 / spec.adapters.length, `${label}: the attention is far from uniform, so the check has teeth`);
    }
  });
}

t.test("sharpened dyn5 (query and key weights ×3: nearly one-hot attention): fused equals literal", async (t) => {
  const adapters = await Promise.all(ROUTES[0].adapters.map(adapter));
  const base = await loadFusion(join(ENGINE_FIXTURES, "fusions", "dyn5"), backbone.config);
  const scale = (x: Tensor, s: number): Tensor => ({ shape: x.shape, data: x.data.map((v) => v * s) });
  const sharpened = base.layers.map((l) => ({ ...l, queryWeight: scale(l.queryWeight, 3), queryBias: scale(l.queryBias, 3), keyWeight: scale(l.keyWeight, 3) }));
  const scores = await folderOfThisThread().scores(backbone.config.hiddenSize, sharpened);
  const fusion: FusionModule = { ...base, layers: sharpened.map((l, i): SavedFusionLayer => ({ ...l, ...scores[i] })) };
  const batch = padBatch(inputBatches()[0].sequences);
  const fused = await engines.fused.run(batch, await routeFeeds(backbone.config, { adapters: adapters, fusion: fusion }, "fused"));
  const literal = await engines.literal.run(batch, await routeFeeds(backbone.config, { adapters: adapters, fusion: fusion }, "literal"));
  const diff = compare(fused, literal, batch.lengths, batch.seqLen);
  t.comment(`max |diff| hidden ${diff.hidden.toExponential(2)}, fusion p ${diff.probs.toExponential(2)}; mean max p ${diff.meanMaxProb.toFixed(3)}`);
  t.ok(diff.hidden <= TOLERANCE, `last hidden state within ${TOLERANCE}`);
  t.ok(diff.probs <= TOLERANCE, `fusion probabilities within ${TOLERANCE}`);
});

// ---------------------------------------------------------------------------------------------
// 2. The algebra alone, in TypeScript on random matrices, through the feeds route.ts builds.
// ---------------------------------------------------------------------------------------------

/** Deterministic standard normals (Box–Muller over a 32-bit LCG). */
function normals(seed: number) {
  let s = seed >>> 0;
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return (count: number, std: number) =>
    Float32Array.from({ length: count }, () => std * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()));
}

/** y = W v + b with W in torch layout [out, in], in float64. */
function affine(W: Tensor, v: ArrayLike<number>, b?: Tensor): Float64Array {
  const [out, inDim] = W.shape;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let sum = b ? b.data[o] : 0;
    for (let i = 0; i < inDim; i++) sum += W.data[o * inDim + i] * v[i];
    y[o] = sum;
  }
  return y;
}
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};
function softmax64(scores: number[]): number[] {
  const max = Math.max(...scores);
  const e = scores.map((s) => Math.exp(s - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

for (const { dim, n, std, label } of [
  { dim: 32, n: 5, std: 1, label: "d=32, N=5, scores O(1)" },
  { dim: 64, n: 2, std: 1, label: "d=64, N=2, scores O(1)" },
  { dim: 48, n: 3, std: 2.5, label: "d=48, N=3, large scores (near one-hot)" },
]) {
  t.test(`algebra on random matrices (${label}): softmax(q·k_i) = softmax(r·u_i), r = x·W_qᵀW_k + b_q·W_k; Σp_i W_v u_i = (Σp_i u_i)·W_vᵀ`, async (t) => {
    const rand = normals(dim * 131 + n);
    const config: BackboneConfig = {
      modelType: "bert",
      hiddenSize: dim,
      numLayers: 1,
      numHeads: 1,
      intermediateSize: dim,
      maxPositions: 8,
      vocabSize: 8,
      layerNormEps: 1e-12,
    };
    const w = (std: number) => ({ shape: [dim, dim], data: rand(dim * dim, std / Math.sqrt(dim)) });
    const saved = {
      queryWeight: w(std),
      queryBias: { shape: [dim], data: rand(dim, std) },
      keyWeight: w(std),
      keyBias: { shape: [dim], data: rand(dim, std) },
      valueWeight: w(1),
    };
    const [score] = await folderOfThisThread().scores(dim, [saved]);
    const layer: SavedFusionLayer = { ...saved, ...score };
    const fusion: FusionModule<SavedFusionLayer> = {
      name: "random",
      version: "0",
      dir: "",
      sizeBytes: 0,
      kind: "dynamic",
      adapters: Array.from({ length: n }, (_, i) => `r${i}`),
      layers: [layer],
      head: { type: "classification", labels: ["x"], linears: [], activation: "linear" },
    };
    const adapters: AdapterModule[] = fusion.adapters.map((name) => ({
      name,
      version: "0",
      dir: "",
      sizeBytes: 0,
      head: null,
      layers: [{ downWeight: { shape: [dim, 4], data: rand(dim * 4, 1) }, downBias: { shape: [4], data: rand(4, 1) }, upWeight: { shape: [4, dim], data: rand(4 * dim, 1) }, upBias: { shape: [dim], data: rand(dim, 1) } }],
    }));
    const feeds = await routeFeeds(config, { adapters: adapters, fusion: fusion }, "fused");
    const names = routeInputs(0);
    const R = 4;
    const K = n * R;
    const inWeight = feeds[names.inWeight].data as Float32Array;
    const inBias = feeds[names.inBias].data as Float32Array;
    const outWeight = feeds[names.outWeight].data as Float32Array;
    t.same(feeds[names.inWeight].dims, [dim, 2 * K + n]);
    t.same(feeds[names.outWeight].dims, [K + n, dim]);

    let probDiff = 0;
    let contextDiff = 0;
    let scoreSpread = 0;
    for (let trial = 0; trial < 20; trial++) {
      const x = rand(dim, 1);
      // Literal: h_i = relu(x·W_down_i + b_down_i), u_i = h_i·W_up_i + b_up_i,
      // q = W_q x + b_q, k_i = W_k u_i + b_k, p = softmax(q·k_i), c = Σ p_i W_v u_i.
      const h = adapters.map((a) => {
        const { downWeight, downBias } = a.layers[0]!;
        return Array.from({ length: R }, (_, j) => Math.max(0, downBias.data[j] + dot(x, Array.from({ length: dim }, (_, i) => downWeight.data[i * R + j]))));
      });
      const u = adapters.map((a, i) => {
        const { upWeight, upBias } = a.layers[0]!;
        return Float64Array.from({ length: dim }, (_, o) => upBias.data[o] + h[i].reduce((sum, hj, j) => sum + hj * upWeight.data[j * dim + o], 0));
      });
      const q = affine(layer.queryWeight, x, layer.queryBias);
      const literalScores = u.map((ui) => dot(q, affine(layer.keyWeight, ui, layer.keyBias)));
      const pLiteral = softmax64(literalScores);
      const cLiteral = new Float64Array(dim);
      u.forEach((ui, i) => affine(layer.valueWeight!, ui).forEach((v, o) => (cLiteral[o] += pLiteral[i] * v)));
      // From the feeds (bert-graph.ts fusedTail): [down | t | c] = x·in_w + in_b,
      // score_i = h_i·t_i + c_i, p = softmax, context = [p⊙h | p]·out_w.
      const projected = Float64Array.from({ length: 2 * K + n }, (_, col) => inBias[col] + x.reduce((sum, xi, i) => sum + xi * inWeight[i * (2 * K + n) + col], 0));
      const hFeeds = Array.from({ length: K }, (_, j) => Math.max(0, projected[j]));
      const scores = Array.from({ length: n }, (_, i) => projected[2 * K + i] + Array.from({ length: R }, (_, j) => hFeeds[i * R + j] * projected[K + i * R + j]).reduce((a, b) => a + b, 0));
      const pRewritten = softmax64(scores);
      const mixedRow = [...hFeeds.map((v, j) => v * pRewritten[Math.floor(j / R)]), ...pRewritten];
      const cRewritten = Float64Array.from({ length: dim }, (_, o) => mixedRow.reduce((sum, v, row) => sum + v * outWeight[row * dim + o], 0));

      probDiff = Math.max(probDiff, maxAbsDiff(pLiteral, pRewritten));
      contextDiff = Math.max(contextDiff, maxAbsDiff(cLiteral, cRewritten));
      scoreSpread = Math.max(scoreSpread, Math.max(...literalScores) - Math.min(...literalScores));
    }
    t.comment(`max |diff| p ${probDiff.toExponential(2)}, context ${contextDiff.toExponential(2)}; largest score spread ${scoreSpread.toFixed(1)}`);
    t.ok(scoreSpread > 1, "the scores differ across adapters, so the softmax is not trivially uniform");
    t.ok(probDiff <= TOLERANCE, `fusion probabilities within ${TOLERANCE} (${probDiff.toExponential(2)})`);
    t.ok(contextDiff <= TOLERANCE, `fusion output within ${TOLERANCE} (${contextDiff.toExponential(2)})`);
  });
}

t.test("static fusion and single-adapter routes apply no value (out_w is the bare up-projection), and a route without fusion has zero scores", async (t) => {
  const static5 = await loadFusion(join(ENGINE_FIXTURES, "fusions", "static5"), backbone.config);
  t.equal(static5.layers[0].valueWeight, null, "a static fusion has no value weights");
  const adapters = await Promise.all(ROUTES[1].adapters.map(adapter));
  const feeds = await routeFeeds(backbone.config, { adapters: adapters, fusion: static5 }, "fused");
  const single = await routeFeeds(backbone.config, { adapters: [adapters[0]], fusion: null }, "fused");
  for (let l = 0; l < L; l++) {
    const names = routeInputs(l);
    const K = feeds[names.outWeight].dims[0] - adapters.length;
    const out = feeds[names.outWeight].data as Float32Array;
    const up = adapters.flatMap((a) => [...a.layers[l]!.upWeight.data, ...new Float32Array((K / adapters.length - a.layers[l]!.downBias.shape[0]) * d)]);
    const upBias = adapters.flatMap((a) => [...a.layers[l]!.upBias.data]);
    t.same([...out], [...up, ...upBias], `static5 layer ${l}: out_w = [W_up ; b_up], no value`);
    const inW = single[names.inWeight].data as Float32Array;
    const [, width] = single[names.inWeight].dims;
    const k1 = (width - 1) / 2;
    t.ok(Array.from({ length: d }, (_, row) => [...inW.subarray(row * width + k1, (row + 1) * width)]).flat().every((v) => v === 0), `single adapter layer ${l}: zero score columns`);
  }
});
