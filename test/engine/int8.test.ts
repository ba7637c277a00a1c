import { join } from "node:path";
import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FusionEngine } from "../../src/engine/engine.js";
import { quantizePerColumn } from "../../src/engine/quantize.js";
import { padBatch } from "../../src/engine/readout.js";
import { loadAdapter, loadFusion } from "../../src/library/adapterhub.js";
import { assembleRoute } from "../../src/library/route.js";
import { ENGINE_FIXTURES, TINY_BACKBONE, expectedOutputs, maxAbsDiff, parityCases } from "../fixtures.js";

/**
 * --precision int8 on the tiny fixture model: close to float32, and an input's answer does not
 * depend on what it is batched with. What int8 costs on real tweets and trained adapters is
 * measured in test/default-library/int8.test.ts.
 */
const backbone = await loadBackbone(TINY_BACKBONE);
const d = backbone.config.hiddenSize;
const engine = (precision: "float32" | "int8") => FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused", precision });
const float32 = await engine("float32");
const int8 = await engine("int8");
t.teardown(() => Promise.all([float32.close(), int8.close()]));

const adapters = await Promise.all(["a1", "a2", "a3", "a4", "a5"].map((n) => loadAdapter(join(ENGINE_FIXTURES, "adapters", n), backbone.config)));
const fusion = await loadFusion(join(ENGINE_FIXTURES, "fusions", "dyn5"), backbone.config);
const route = assembleRoute("dyn5", backbone.config, adapters, fusion, fusion.head!);
const c = parityCases().find((p) => p.name === "dyn5_batch8")!;
const expected = expectedOutputs(c);
const sequences = expected.ids.map((row, b) => row.filter((_, i) => expected.mask[b][i] === 1));

t.test("per-column weight quantization: every weight within half a step, the largest exact", async (t) => {
  const data = Float32Array.from([0.5, -2, 0, 0.25, 1, 0, -0.125, 0.003, 0]);
  const { values, scales } = quantizePerColumn({ shape: [3, 3], data });
  t.same([...scales], [Math.fround(0.5 / 127), Math.fround(2 / 127), 1], "max |w| / 127 per column; an all-zero column gets scale 1");
  t.same([values[0], values[1]], [127, -127]);
  data.forEach((w, i) => t.ok(Math.abs(w - values[i] * scales[i % 3]) <= scales[i % 3] / 2 + 1e-9, `w[${i}] = ${w}`));
});

t.test("per-column weight quantization: a negligible column is a zero column, nothing wraps around", async (t) => {
  const data = Float32Array.from([1e-38, 3, 2.5e-43, -1e-37, -3, -2.5e-43, 0, 2.99, 0]);
  const { values, scales } = quantizePerColumn({ shape: [3, 3], data });
  t.same([...scales], [1, Math.fround(3 / 127), 1], "columns of max 1e-37 and 2.5e-43: their max / 127 would be subnormal");
  t.same([...values], [0, 127, 0, 0, -127, 0, 0, 127, 0], "2.5e-43 / (2.5e-43 / 127) in float32 would wrap around int8");
});

t.test("int8 stays close to float32 on a 5-adapter fusion", async (t) => {
  const batch = padBatch(sequences);
  const [a, b] = [await float32.run(batch, route.feeds), await int8.run(batch, route.feeds)];
  const scale = Math.max(...a.hidden.map(Math.abs));
  const diff = maxAbsDiff(a.hidden, b.hidden);
  t.ok(diff / scale <= 0.05, `last hidden state: max |diff| ${diff.toExponential(2)} = ${((100 * diff) / scale).toFixed(2)}% of max |h| ${scale.toFixed(2)} (limit 5%)`);
  const probs = maxAbsDiff(a.fusionProbs!.data, b.fusionProbs!.data);
  t.ok(probs <= 0.05, `fusion attention: max |diff| ${probs.toExponential(2)} (limit 0.05)`);
});

t.test("an input's int8 answer is the same alone and in a padded batch", async (t) => {
  const alone = await int8.run(padBatch([sequences[0]]), route.feeds);
  const batch = padBatch(sequences);
  const together = await int8.run(batch, route.feeds);
  const n = sequences[0].length * d;
  const diff = maxAbsDiff(alone.hidden.subarray(0, n), together.hidden.subarray(0, n));
  t.ok(diff <= 1e-5, `max |diff| ${diff.toExponential(2)} (limit 1e-5; batch of ${batch.batch}, padded to ${batch.seqLen})`);
});
