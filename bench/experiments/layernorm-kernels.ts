/**
 * Bench-only experiment: the residual LayerNorm of a BERT layer, LN(x + skip + bias) on a
 * [2048, 384] float32 input (32 × 64 tokens of MiniLM), as ONNX Runtime's fused
 * com.microsoft SkipLayerNormalization against Add + Add + LayerNormalization. Twelve in a chain
 * per graph, as many as the plain backbone has; median time per node of 30 runs, both graph
 * optimization levels (so that a fusion by ONNX Runtime would show). src/engine/bert-graph.ts
 * uses the unfused form because of what this measures.
 *
 *   npx tsx bench/experiments/layernorm-kernels.ts
 */
import { availableParallelism } from "node:os";
import ort from "onnxruntime-node";
import { FLOAT, OnnxGraph } from "../../src/engine/onnx/graph.js";

const d = 384;
const rows = 2048;
const chain = 12;
const threads = Math.min(2, availableParallelism());

function build(form: "SkipLayerNormalization" | "Add + LayerNormalization"): Uint8Array {
  const g = new OnnxGraph();
  let x = g.input("x", FLOAT, [rows, d]);
  const skip = g.input("skip", FLOAT, [rows, d]);
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
  g.output("y", FLOAT, [rows, d]);
  return g.toBytes(form);
}

const data = Float32Array.from({ length: rows * d }, (_, i) => Math.sin(i));
const feeds = { x: new ort.Tensor("float32", data, [rows, d]), skip: new ort.Tensor("float32", data.slice().reverse(), [rows, d]) };
console.log(`${rows} × ${d} float32, ${threads} threads, ms per node (median of 30 runs of a chain of ${chain})`);
for (let round = 0; round < 2; round++) {
  for (const form of ["SkipLayerNormalization", "Add + LayerNormalization"] as const) {
    for (const level of ["all", "disabled"] as const) {
      const session = await ort.InferenceSession.create(build(form), { graphOptimizationLevel: level, intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: "sequential" });
      for (let i = 0; i < 5; i++) await session.run(feeds);
      const times: number[] = [];
      for (let i = 0; i < 30; i++) {
        const start = performance.now();
        await session.run(feeds);
        times.push(performance.now() - start);
      }
      times.sort((a, b) => a - b);
      console.log(`${form.padEnd(26)} optimization ${level.padEnd(8)} ${(times[15] / chain).toFixed(2)} ms`);
      await session.release();
    }
  }
}
