/**
 * Bench-only experiment: the residual LayerNorm of a BERT layer, LN(x + skip + bias) on a
 * [32, 64, 384] float32 input (32 × 64 tokens of MiniLM), as ONNX Runtime's fused
 * com.microsoft SkipLayerNormalization against Add + Add + LayerNormalization. Twelve in a chain
 * per graph, as many as the plain backbone has; median time per node of 30 runs, optimization
 * level "all". The unfused form is run twice: with ONNX Runtime's SkipLayerNormFusion turned off,
 * as src/engine/engine.ts runs it, and on, when ONNX Runtime turns it back into the fused kernel.
 * bert-graph.ts writes the unfused form because of what this measures.
 *
 *   npx tsx bench/experiments/layernorm-kernels.ts
 */
import { availableParallelism } from "node:os";
import ort from "onnxruntime-node";
import { sessionOptions } from "../../src/engine/engine.js";
import { FLOAT, OnnxGraph, type Dim } from "../../src/engine/onnx/graph.js";

const d = 384;
const [batch, seqLen] = [32, 64];
const chain = 12;
const threads = Math.min(2, availableParallelism());

type Form = "SkipLayerNormalization" | "Add + LayerNormalization";

function build(form: Form, dims: Dim[]): Uint8Array {
  const g = new OnnxGraph();
  let x = g.input("x", FLOAT, dims);
  const skip = g.input("skip", FLOAT, dims);
  const gamma = g.floats("gamma", [d], new Float32Array(d).fill(1));
  const beta = g.floats("beta", [d], new Float32Array(d));
  const bias = g.floats("bias", [d], new Float32Array(d).fill(0.1));
  const epsilon = { float: 1e-12 };
  for (let i = 0; i < chain; i++) {
    x =
      form === "SkipLayerNormalization"
        ? g.op("SkipLayerNormalization", [x, skip, gamma, beta, bias], { epsilon }, "ms")
        : g.op("LayerNormalization", [g.op("Add", [g.op("Add", [x, bias]), skip]), gamma, beta], { axis: -1, epsilon });
  }
  g.node("Identity", [x], {}, { outputs: ["y"] });
  g.output("y", FLOAT, dims);
  return g.toBytes(form);
}

const shape = [batch, seqLen, d];
const data = Float32Array.from({ length: batch * seqLen * d }, (_, i) => Math.sin(i));
const feeds = { x: new ort.Tensor("float32", data, shape), skip: new ort.Tensor("float32", data.slice().reverse(), shape) };
const cases: [Form, string, boolean][] = [
  ["SkipLayerNormalization", "", false],
  ["Add + LayerNormalization", "fusion off (engine)", true],
  ["Add + LayerNormalization", "fusion on", false],
];
console.log(`${shape.join(" × ")} float32, ${threads} threads, ms per node (median of 30 runs of a chain of ${chain})`);
for (let round = 0; round < 2; round++) {
  for (const [form, label, fusionOff] of cases) {
    const { extra, ...fusionOn } = sessionOptions({ device: "cpu", threads, variant: "plain" });
    const session = await ort.InferenceSession.create(build(form, ["B", "T", d]), fusionOff ? { ...fusionOn, extra } : fusionOn);
    for (let i = 0; i < 5; i++) await session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < 30; i++) {
      const start = performance.now();
      await session.run(feeds);
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    console.log(`${form.padEnd(26)} ${label.padEnd(20)} ${(times[15] / chain).toFixed(2)} ms`);
    await session.release();
  }
}
