import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FusionEngine } from "../../src/engine/engine.js";
import type { HeadOutput, TaggingOutput } from "../../src/engine/heads.js";
import { routeFeeds } from "../../src/engine/layout.js";
import { padBatch } from "../../src/engine/packing.js";
import { readout, type InputReadout } from "../../src/engine/readout.js";
import { exportRoute, type ExportDescription } from "../../src/export/export-route.js";
import { loadAdapter, loadFusion } from "../../src/library/adapterhub.js";
import { FIXTURES, expectedOutputs, maxAbsDiff, type ParityCase } from "../fixtures.js";

/**
 * Acceptance 2 of issue 13, without Python: a route of the RoBERTa fixture library exported as a
 * standalone model and run in a fresh ONNX Runtime session (nothing of the engine) answers what
 * the engine answers, ≤ 1e-5. python/export/check_export.py does the same from Python against a
 * live server.
 */

const FAMILY = join(FIXTURES, "families", "roberta");
const backbone = await loadBackbone(join(FAMILY, "backbone"));
const d = backbone.config.hiddenSize;
const cases = JSON.parse(await readFile(join(FAMILY, "cases.json"), "utf8")) as ParityCase[];
const expected = expectedOutputs(cases.find((c) => c.name === "dyn")!, FAMILY);
const sequences = expected.ids.map((row, b) => row.filter((_, i) => expected.mask[b][i] === 1));

/** The fixture's modules as a library: a1, a2 and the fusions dyn and static. */
async function fixtureLibrary(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "export-library-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  for (const [kind, names] of [["adapters", ["a1", "a2"]], ["fusions", ["dyn", "static"]]] as const) {
    for (const name of names) {
      await mkdir(join(root, kind, name), { recursive: true });
      await cp(join(FAMILY, kind, name), join(root, kind, name, "1"), { recursive: true });
    }
  }
  const manifest = { backbone: join(FAMILY, "backbone"), adapters: { a1: "1", a2: "1" }, fusions: { dyn: "1", static: "1" } };
  await writeFile(join(root, "library.json"), JSON.stringify(manifest));
  return root;
}

const library = await fixtureLibrary();
const outRoot = await mkdtemp(join(tmpdir(), "export-"));
t.teardown(() => rm(outRoot, { recursive: true, force: true }));

const engines = {
  float32: await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused" }),
  int8: await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused", precision: "int8", int8Weights: "7" }),
};
t.teardown(() => Promise.all(Object.values(engines).map((e) => e.close())));

/** The engine's answers for a route, as the server computes them. */
async function engineAnswers(route: string, precision: keyof typeof engines, padId: number): Promise<InputReadout[]> {
  const fusion = route === "dyn" || route === "static" ? await loadFusion(join(FAMILY, "fusions", route), backbone.config) : null;
  const adapters = await Promise.all((fusion ? fusion.adapters : [route]).map((a) => loadAdapter(join(FAMILY, "adapters", a), backbone.config)));
  const head = fusion?.head ?? adapters[0].head!;
  const batch = padBatch(sequences, padId);
  return readout(head, await engines[precision].run(batch, await routeFeeds(backbone.config, { adapters, fusion })), batch, d, true);
}

/** The exported model alone, in a session of its own. */
async function exportedAnswers(dir: string, padId: number) {
  const session = await ort.InferenceSession.create(join(dir, "model.onnx"), { executionProviders: ["cpu"], intraOpNumThreads: 1 });
  try {
    const batch = padBatch(sequences, padId);
    const shape = [batch.rows, batch.seqLen];
    const out = await session.run({ input_ids: new ort.Tensor("int64", batch.ids, shape), attention_mask: new ort.Tensor("int64", batch.mask, shape) });
    return { out, seqLen: batch.seqLen, inputNames: session.inputNames, outputNames: session.outputNames };
  } finally {
    await session.release();
  }
}

const rowsOf = (o: InputReadout, key: "logits" | "probabilities"): number[][] =>
  "tokens" in o.output ? (o.output as TaggingOutput).tokens.map((tok) => tok[key]) : [(o.output as HeadOutput)[key]];

for (const { route, precision } of [
  { route: "dyn", precision: "float32" },
  { route: "static", precision: "float32" },
  { route: "a1", precision: "float32" },
  { route: "dyn", precision: "int8" },
] as const) {
  t.test(`${route} (${precision}): the exported model answers as the engine`, async (t) => {
    const dir = join(outRoot, `${route}-${precision}`);
    const description = await exportRoute({ library, route, out: dir, precision });
    const written = JSON.parse(await readFile(join(dir, "route.json"), "utf8")) as ExportDescription;
    t.same(written, description, "route.json describes the export");
    t.same(await readFile(join(dir, "tokenizer.json")), await readFile(join(FAMILY, "backbone", "tokenizer.json")), "the backbone's tokenizer.json beside it");
    t.equal(written.max_length, 40, "the longest input the RoBERTa table serves");

    const ours = await engineAnswers(route, precision, 1);
    const C = written.labels.length;
    for (const padId of [1, 0]) {
      const { out, seqLen, inputNames, outputNames } = await exportedAnswers(dir, padId);
      t.same(inputNames, written.inputs.map((i) => i.name), "its inputs are the token ids and the mask, nothing of the route");
      t.same(outputNames, written.outputs.map((o) => o.name), "its outputs as route.json lists them");
      for (const key of ["logits", "probabilities"] as const) {
        const data = out[key].data as Float32Array;
        const tagging = written.head_type === "tagging";
        t.same(out[key].dims, tagging ? [sequences.length, seqLen, C] : [sequences.length, C], `${key} shape`);
        let diff = 0;
        ours.forEach((o, b) => {
          rowsOf(o, key).forEach((row, i) => {
            const at = tagging ? (b * seqLen + i) * C : b * C;
            diff = Math.max(diff, maxAbsDiff(row, data.subarray(at, at + C)));
          });
        });
        t.ok(diff <= 1e-5, `pad id ${padId}: ${key} within 1e-5 of the engine's (max |diff| ${diff.toExponential(2)})`);
      }
      if (route === "a1") continue;
      const weights = out.fusion_weights.data as Float32Array;
      const [, L, N] = out.fusion_weights.dims;
      const diff = Math.max(...ours.map((o, b) => maxAbsDiff(o.fusionWeights!.flat(), weights.subarray(b * L * N, (b + 1) * L * N))));
      t.ok(diff <= 1e-5, `pad id ${padId}: fusion_weights within 1e-5 of explain's (max |diff| ${diff.toExponential(2)})`);
    }
    if (route === "dyn" && precision === "float32") {
      const { out } = await exportedAnswers(dir, 1);
      const diff = maxAbsDiff(out.logits.data as Float32Array, expected.tensors.get("logits")!.data);
      t.ok(diff <= 1e-4, `logits within 1e-4 of the adapters library's (max |diff| ${diff.toExponential(2)})`);
    }
  });
}

t.test("a route the library does not have is refused by name", async (t) => {
  await t.rejects(exportRoute({ library, route: "nope", out: join(outRoot, "nope"), precision: "float32" }), { code: "route_not_found", message: "route 'nope' does not exist" });
});
