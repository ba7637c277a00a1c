import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { resolvePrecision, type ProbeOptions } from "../../src/engine/precision.js";
import { TINY_BACKBONE } from "../fixtures.js";

const options: ProbeOptions = { device: "cpu", threads: 1, int8Weights: "auto", slots: 2, batchInputs: 4 };
const unused = () => Promise.reject(new Error("the backbone was loaded for nothing"));

t.test("float32 and int8 are taken as asked, without a probe", async (t) => {
  for (const precision of ["float32", "int8"] as const) {
    t.same(await resolvePrecision(precision, unused, options), { precision, reason: `--precision ${precision}` });
  }
});

t.test("auto on a GPU is float32, without a probe: int8 runs on the CPU only", async (t) => {
  t.equal((await resolvePrecision("auto", unused, { ...options, device: "cuda" })).precision, "float32");
});

t.test("auto on the CPU times both graphs over one input and a full pass, and takes int8 only where it is no slower at both", async (t) => {
  const resolved = await resolvePrecision("auto", () => loadBackbone(TINY_BACKBONE), options);
  t.same(resolved.ratios?.map((r) => r.inputs), [1, 4], "one input, and --max-batch-size inputs");
  t.ok(resolved.ratios!.every((r) => Number.isFinite(r.ratio) && r.ratio > 0));
  t.equal(resolved.precision, resolved.ratios!.every((r) => r.ratio <= 1) ? "int8" : "float32");
  t.match(resolved.reason, /^auto: .*int8 pass time \/ float32 on this CPU: 1 input [\d.]+×, 4 inputs [\d.]+×/);
  t.comment(resolved.reason);
});
