import { join } from "node:path";
import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FusionEngine } from "../../src/engine/engine.js";
import type { Int8WeightChoice } from "../../src/engine/int8-mode.js";
import { routeFeeds } from "../../src/engine/layout.js";
import { quantizePerColumn } from "../../src/engine/quantize.js";
import { padBatch } from "../../src/engine/packing.js";
import { loadAdapter, loadFusion } from "../../src/library/adapterhub.js";
import { ENGINE_FIXTURES, TINY_BACKBONE, expectedOutputs, maxAbsDiff, parityCases } from "../fixtures.js";

/**
 * --precision int8 on the tiny fixture model: close to float32 with the weight range this CPU gets
 * and with 7-bit weights (what a CPU without VNNI gets), and an input's answer does not depend on
 * what it is batched with. What int8 costs on real tweets and trained adapters is measured in
 * test/default-library/int8.test.ts; how the weight range is chosen, in int8-mode.test.ts.
 */
const backbone = await loadBackbone(TINY_BACKBONE);
const d = backbone.config.hiddenSize;
const engine = (precision: "float32" | "int8", int8Weights?: Int8WeightChoice) => FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused", precision, int8Weights });
const float32 = await engine("float32");
const int8 = await engine("int8");
const int8w7 = await engine("int8", "7");
t.teardown(() => Promise.all([float32.close(), int8.close(), int8w7.close()]));

const adapters = await Promise.all(["a1", "a2", "a3", "a4", "a5"].map((n) => loadAdapter(join(ENGINE_FIXTURES, "adapters", n), backbone.config)));
const fusion = await loadFusion(join(ENGINE_FIXTURES, "fusions", "dyn5"), backbone.config);
const feeds = await routeFeeds(backbone.config, { adapters, fusion });
const c = parityCases().find((p) => p.name === "dyn5_batch8")!;
const expected = expectedOutputs(c);
const sequences = expected.ids.map((row, b) => row.filter((_, i) => expected.mask[b][i] === 1));

t.test("per-column weight quantization: every weight within half a step, the largest exact", async (t) => {
  const data = Float32Array.from([0.5, -2, 0, 0.25, 1, 0, -0.125, 0.003, 0]);
  const { values, scales } = quantizePerColumn({ shape: [3, 3], data }, 127);
  t.same([...scales], [Math.fround(0.5 / 127), Math.fround(2 / 127), 1], "max |w| / 127 per column; an all-zero column gets scale 1");
  t.same([values[0], values[1]], [127, -127]);
  data.forEach((w, i) => t.ok(Math.abs(w - values[i] * scales[i % 3]) <= scales[i % 3] / 2 + 1e-9, `w[${i}] = ${w}`));
});

t.test("per-column weight quantization: a negligible column is a zero column, nothing wraps around", async (t) => {
  const data = Float32Array.from([1e-38, 3, 2.5e-43, -1e-37, -3, -2.5e-43, 0, 2.99, 0]);
  const { values, scales } = quantizePerColumn({ shape: [3, 3], data }, 127);
  t.same([...scales], [1, Math.fround(3 / 127), 1], "columns of max 1e-37 and 2.5e-43: their max / 127 would be subnormal");
  t.same([...values], [0, 127, 0, 0, -127, 0, 0, 127, 0], "2.5e-43 / (2.5e-43 / 127) in float32 would wrap around int8");
});

t.test("per-column weight quantization to 7 bits: |q| ≤ 63, every weight within half a step", async (t) => {
  const data = Float32Array.from([0.5, -2, 0, 0.25, 1, 0, -0.125, 0.003, 0]);
  const { values, scales } = quantizePerColumn({ shape: [3, 3], data }, 63);
  t.same([...scales], [Math.fround(0.5 / 63), Math.fround(2 / 63), 1]);
  t.same([values[0], values[1]], [63, -63]);
  t.ok(values.every((q) => Math.abs(q) <= 63), "no weight outside ±63");
  data.forEach((w, i) => t.ok(Math.abs(w - values[i] * scales[i % 3]) <= scales[i % 3] / 2 + 1e-9, `w[${i}] = ${w}`));
});

const modes = [[`the weights this CPU gets, ${int8.int8!.weightBits}-bit`, int8], ["7-bit weights, as on a CPU without VNNI", int8w7]] as const;
for (const [label, quantized] of modes) {
  t.test(`int8 stays close to float32 on a 5-adapter fusion (${label})`, async (t) => {
    const batch = padBatch(sequences);
    const [a, b] = [await float32.run(batch, feeds), await quantized.run(batch, feeds)];
    const scale = Math.max(...a.hidden.map(Math.abs));
    const diff = maxAbsDiff(a.hidden, b.hidden);
    t.ok(diff / scale <= 0.05, `last hidden state: max |diff| ${diff.toExponential(2)} = ${((100 * diff) / scale).toFixed(2)}% of max |h| ${scale.toFixed(2)} (limit 5%)`);
    const probs = maxAbsDiff(a.fusionProbs!.data, b.fusionProbs!.data);
    t.ok(probs <= 0.05, `fusion attention: max |diff| ${probs.toExponential(2)} (limit 0.05)`);
  });
}

t.test("an input's int8 answer is the same alone and in a padded batch", async (t) => {
  const alone = await int8.run(padBatch([sequences[0]]), feeds);
  const batch = padBatch(sequences);
  const together = await int8.run(batch, feeds);
  const n = sequences[0].length * d;
  const diff = maxAbsDiff(alone.hidden.subarray(0, n), together.hidden.subarray(0, n));
  t.ok(diff <= 1e-5, `max |diff| ${diff.toExponential(2)} (limit 1e-5; batch of ${batch.rows}, padded to ${batch.seqLen})`);
});
