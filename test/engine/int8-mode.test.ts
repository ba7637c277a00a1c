import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FusionEngine } from "../../src/engine/engine.js";
import { productsExact, resolveInt8Mode } from "../../src/engine/int8-mode.js";
import { quantizePerColumn } from "../../src/engine/quantize.js";
import { TINY_BACKBONE } from "../fixtures.js";

/**
 * The int8 weight range is chosen per CPU (int8-mode.ts): whatever the CPU, the range the engine
 * uses must give exact integer products. On an AVX2 CPU without VNNI, 8-bit weights fail the probe
 * and the engine must fall back to 7 bits; on a VNNI or AMX CPU it keeps 8. `npm run test:avx2`
 * runs this file on an emulated AVX2 CPU.
 */
const auto = await resolveInt8Mode("auto");
t.comment(`this CPU: ${auto.saturatesAt8Bits ? "u8×s8 products saturate at 8 bits" : "u8×s8 products exact at 8 bits"}, int8 weights ${auto.weightBits}-bit`);

t.test("7-bit weights give exact products on this CPU", async (t) => {
  t.ok(await productsExact(63), "255 × ±63, pairs summed: at most 32 130, inside int16");
});

t.test("auto picks the widest range whose products are exact here", async (t) => {
  const exact8 = await productsExact(127);
  t.equal(auto.saturatesAt8Bits, !exact8);
  t.same([auto.weightBits, auto.weightMax], exact8 ? [8, 127] : [7, 63]);
  t.ok(await productsExact(auto.weightMax), `the chosen ±${auto.weightMax} is exact`);
});

t.test("--int8-weights 8 or 7 is taken as asked, the probe's answer still reported", async (t) => {
  t.same(await resolveInt8Mode("8"), { weightBits: 8, weightMax: 127, saturatesAt8Bits: auto.saturatesAt8Bits });
  t.same(await resolveInt8Mode("7"), { weightBits: 7, weightMax: 63, saturatesAt8Bits: auto.saturatesAt8Bits });
});

t.test("quantized weights stay within the range asked for", async (t) => {
  const rows = 64;
  const cols = 48;
  const data = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 12.9898) * (1 + (i % cols)));
  for (const weightMax of [127, 63]) {
    const { values, scales } = quantizePerColumn({ shape: [rows, cols], data }, weightMax);
    const largest = values.reduce((m, q) => Math.max(m, Math.abs(q)), 0);
    t.equal(largest, weightMax, `largest |q| is ${weightMax}`);
    t.ok(data.every((w, i) => Math.abs(w - values[i] * scales[i % cols]) <= scales[i % cols] / 2 + 1e-6), "every weight within half a step");
  }
});

t.test("the engine reports the range it runs with; float32 has none", async (t) => {
  const backbone = await loadBackbone(TINY_BACKBONE);
  const engines = await Promise.all([
    FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused", precision: "int8" }),
    FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused", precision: "int8", int8Weights: "7" }),
    FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused" }),
  ]);
  t.teardown(() => Promise.all(engines.map((e) => e.close())));
  t.same(engines.map((e) => e.int8), [auto, { ...auto, weightBits: 7, weightMax: 63 }, undefined]);
});
