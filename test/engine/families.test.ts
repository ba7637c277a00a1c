import { readFileSync } from "node:fs";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { loadBackbone, parseBackboneConfig, type Backbone } from "../../src/engine/backbone.js";
import { FusionEngine } from "../../src/engine/engine.js";
import type { HeadOutput, PredictionHead, TaggingOutput } from "../../src/engine/heads.js";
import { backboneFeeds, routeFeeds, type RouteFeeds } from "../../src/engine/layout.js";
import { padBatch } from "../../src/engine/packing.js";
import { readout, readoutPass, type InputReadout } from "../../src/engine/readout.js";
import { TextTokenizer } from "../../src/engine/tokenizer.js";
import { loadAdapter, loadFusion, type AdapterModule, type FusionModule } from "../../src/library/adapterhub.js";
import { FIXTURES, expectedOutputs, maxAbsDiff, type ParityCase } from "../fixtures.js";

/**
 * Acceptance 1 of issue 13: RoBERTa, XLM-RoBERTa and DistilBERT backbones with AdapterHub adapters,
 * fusions and heads give the `adapters` library's outputs (python/fixtures/make_family_fixtures.py)
 * through the fused and the literal graph, and their tokenizer.json the ids of Python `tokenizers`.
 */

const TOLERANCE = 1e-4;
const FAMILIES = ["roberta", "xlm-roberta", "distilbert"] as const;
const familyRoot = (family: string) => join(FIXTURES, "families", family);

interface Route {
  readonly adapters: AdapterModule[];
  readonly fusion: FusionModule | null;
  readonly head: PredictionHead | null;
}

async function loadRoute(root: string, backbone: Backbone, c: ParityCase): Promise<Route> {
  const names = c.adapters ?? (c.adapter ? [c.adapter] : []);
  const adapters = await Promise.all(names.map((n) => loadAdapter(join(root, "adapters", n), backbone.config)));
  const fusion = c.fusion ? await loadFusion(join(root, "fusions", c.fusion), backbone.config) : null;
  return { adapters, fusion, head: fusion?.head ?? adapters[0]?.head ?? null };
}

/** max |ours − library| of the logits, per input (sequence heads) or per real token (tagging). */
function logitsDiff(outputs: readonly InputReadout[], logits: Float32Array, labels: number, seqLen: number): number {
  let diff = 0;
  outputs.forEach((o, b) => {
    if ("tokens" in o.output) {
      (o.output as TaggingOutput).tokens.forEach((tok, i) => {
        diff = Math.max(diff, maxAbsDiff(tok.logits, logits.subarray((b * seqLen + i) * labels, (b * seqLen + i + 1) * labels)));
      });
    } else {
      diff = Math.max(diff, maxAbsDiff((o.output as HeadOutput).logits, logits.subarray(b * labels, (b + 1) * labels)));
    }
  });
  return diff;
}

const flatLogits = (o: InputReadout): number[] => ("tokens" in o.output ? (o.output as TaggingOutput).tokens.flatMap((tok) => tok.logits) : (o.output as HeadOutput).logits);

for (const family of FAMILIES) {
  const root = familyRoot(family);
  const backbone = await loadBackbone(join(root, "backbone"));
  const d = backbone.config.hiddenSize;
  const cases = JSON.parse(readFileSync(join(root, "cases.json"), "utf8")) as ParityCase[];
  const engines = {
    plain: await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "plain" }),
    fused: await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused" }),
    literal: await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "literal" }),
  };
  t.teardown(() => Promise.all(Object.values(engines).map((e) => e.close())));

  t.test(`${family}: config`, async (t) => {
    t.equal(backbone.config.modelType, family);
    // The fixtures' tables hold 40 usable positions; RoBERTa's has padding_idx + 1 rows more.
    t.equal(backbone.config.maxPositions, 40, "the longest input the position table serves");
    t.equal(backbone.tokenTypeRow === null, family === "distilbert", "token types only where the family has them");
  });

  for (const c of cases) {
    const variants = c.kind === "plain" ? (["plain", "fused"] as const) : (["fused", "literal"] as const);
    for (const variant of variants) {
      t.test(`${family}: ${c.name} (${variant} graph) matches the adapters library`, async (t) => {
        const expected = expectedOutputs(c, root);
        const sequences = expected.ids.map((row, b) => row.filter((_, i) => expected.mask[b][i] === 1));
        const route = await loadRoute(root, backbone, c);
        const batch = padBatch(sequences);
        const feeds = variant === "plain" ? {} : route.head ? await routeFeeds(backbone.config, route, variant) : await backboneFeeds(backbone.config);
        const result = await engines[variant].run(batch, feeds);
        const T = expected.ids[0].length;

        const hidden = expected.tensors.get("last_hidden_state")!;
        let hiddenDiff = 0;
        sequences.forEach((s, b) => {
          const ours = result.hidden.subarray(b * batch.seqLen * d, (b * batch.seqLen + s.length) * d);
          hiddenDiff = Math.max(hiddenDiff, maxAbsDiff(ours, hidden.data.subarray(b * T * d, (b * T + s.length) * d)));
        });
        t.ok(hiddenDiff <= TOLERANCE, `last hidden state within ${TOLERANCE} (max |diff| ${hiddenDiff.toExponential(2)})`);
        if (!route.head) return;

        const outputs = readout(route.head, result, batch, d, true);
        const diff = logitsDiff(outputs, expected.tensors.get("logits")!.data, route.head.labels.length, T);
        t.ok(diff <= TOLERANCE, `${route.head.type} logits within ${TOLERANCE} (max |diff| ${diff.toExponential(2)})`);

        const attention = expected.tensors.get("fusion_attentions");
        if (attention) {
          // [L, B, T, N] from the library; ours averaged over each input's tokens, as explain reports it.
          const [L, , , N] = attention.shape;
          let attentionDiff = 0;
          outputs.forEach((o, b) => {
            for (let l = 0; l < L; l++) {
              for (let i = 0; i < N; i++) {
                let sum = 0;
                for (let tok = 0; tok < sequences[b].length; tok++) sum += attention.data[((l * batch.rows + b) * T + tok) * N + i];
                attentionDiff = Math.max(attentionDiff, Math.abs(sum / sequences[b].length - o.fusionWeights![l][i]));
              }
            }
          });
          t.ok(attentionDiff <= TOLERANCE, `fusion attention within ${TOLERANCE} (max |diff| ${attentionDiff.toExponential(2)})`);
        }
      });
    }
  }

  const fusionCase = cases.find((c) => c.name === "dyn")!;
  const taggerCase = cases.find((c) => c.name === "a2")!;

  t.test(`${family}: padding never moves a real token, whatever id pads the batch`, async (t) => {
    const route = await loadRoute(root, backbone, fusionCase);
    const feeds = await routeFeeds(backbone.config, route);
    const expected = expectedOutputs(fusionCase, root);
    const sequences = expected.ids.map((row, b) => row.filter((_, i) => expected.mask[b][i] === 1));
    // The longest input the table serves, padded beside short ones: RoBERTa would number padded
    // tokens past the table if the graph counted them.
    const longest = [...sequences[0], ...Array.from({ length: backbone.config.maxPositions - sequences[0].length }, (_, i) => 10 + (i % 50))];
    longest[longest.length - 1] = sequences[0][sequences[0].length - 1];
    const rows = [longest, ...sequences];
    const alone = await Promise.all(rows.map(async (s) => flatLogits(readout(route.head!, await engines.fused.run(padBatch([s]), feeds), padBatch([s]), d, false)[0])));
    for (const padId of [0, 1, 2]) {
      const batch = padBatch(rows, padId);
      const outputs = readout(route.head!, await engines.fused.run(batch, feeds), batch, d, false);
      const diff = Math.max(...outputs.map((o, b) => maxAbsDiff(flatLogits(o), alone[b])));
      t.ok(diff <= 1e-5, `pad id ${padId}: every input's logits as when run alone (max |diff| ${diff.toExponential(2)})`);
    }
  });

  t.test(`${family}: two routes in one pass (route slots) and int8 answer as the float32 single-route runs`, async (t) => {
    const fusionRoute = await loadRoute(root, backbone, fusionCase);
    const taggerRoute = await loadRoute(root, backbone, taggerCase);
    const expected = expectedOutputs(fusionCase, root);
    const sequences = expected.ids.map((row, b) => row.filter((_, i) => expected.mask[b][i] === 1));
    const slotted = await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused", slots: 2 });
    const int8 = await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused", precision: "int8" });
    t.teardown(() => Promise.all([slotted.close(), int8.close()]));
    const feeds: RouteFeeds[] = [await routeFeeds(backbone.config, fusionRoute), await routeFeeds(backbone.config, taggerRoute)];
    const heads = [fusionRoute.head!, taggerRoute.head!];
    const single = await Promise.all(
      feeds.map(async (f, i) => {
        const batch = padBatch(sequences);
        return readout(heads[i], await engines.fused.run(batch, f), batch, d, false).map(flatLogits);
      }),
    );
    const batch = padBatch([...sequences, ...sequences]);
    const pass = await slotted.runPass(batch, feeds.map((f) => ({ feeds: f, inputs: sequences.length })));
    const outputs = readoutPass(pass, batch, heads.map((head) => ({ head, inputs: sequences.length, explain: false })), d);
    const slotDiff = Math.max(...outputs.map((o, i) => maxAbsDiff(flatLogits(o), single[Math.floor(i / sequences.length)][i % sequences.length])));
    t.ok(slotDiff <= 1e-5, `each slot's rows as its route alone (max |diff| ${slotDiff.toExponential(2)})`);

    const plainBatch = padBatch(sequences);
    const quantized = readout(heads[0], await int8.run(plainBatch, feeds[0]), plainBatch, d, false).map(flatLogits);
    const int8Diff = Math.max(...quantized.map((l, b) => maxAbsDiff(l, single[0][b])));
    t.ok(int8Diff <= 0.05, `int8 logits near float32 (max |diff| ${int8Diff.toExponential(2)})`);
  });

  t.test(`${family}: tokenizer.json gives the ids of Python tokenizers`, async (t) => {
    const { cases: references } = JSON.parse(readFileSync(join(root, "tokenizer_cases.json"), "utf8")) as { cases: { text: string; ids: number[] }[] };
    const tokenizer = await TextTokenizer.load(join(root, "backbone"), 512);
    for (const ref of references) t.same(tokenizer.encode(ref.text).ids, ref.ids, JSON.stringify(ref.text.slice(0, 40)));

    const long = references.reduce((a, b) => (b.ids.length > a.ids.length ? b : a));
    const cut = await TextTokenizer.load(join(root, "backbone"), backbone.config.maxPositions);
    const encoded = cut.encode(long.text);
    t.ok(encoded.truncated, "the longest string is cut");
    t.same(encoded.ids, [...long.ids.slice(0, backbone.config.maxPositions - 1), long.ids[long.ids.length - 1]], "a cut input keeps its closing token (</s>, [SEP])");
  });
}

t.test("config.json of each family: what the graph does not reproduce is refused, naming the field", async (t) => {
  const read = (family: string) => JSON.parse(readFileSync(join(familyRoot(family), "backbone", "config.json"), "utf8")) as Record<string, unknown>;
  const refused = (raw: Record<string, unknown>, message: RegExp) => t.throws(() => parseBackboneConfig(raw, "config.json"), { code: "unsupported_config", message });
  refused({ ...read("roberta"), model_type: "deberta-v2" }, /model_type 'deberta-v2' is not supported \(supported: bert, roberta, xlm-roberta, distilbert\)/);
  refused({ ...read("distilbert"), activation: "relu" }, /activation 'relu' is not supported \(supported: gelu\)/);
  refused({ ...read("roberta"), hidden_act: "gelu_new" }, /hidden_act 'gelu_new' is not supported/);
  refused({ ...read("xlm-roberta"), position_embedding_type: "relative_key" }, /position_embedding_type 'relative_key' is not supported/);
  refused({ ...read("roberta"), pad_token_id: 41 }, /pad_token_id 41 leaves no positions/);
});

t.test("an adapter saved from another family is refused, naming where its tensors were looked for", async (t) => {
  const roberta = await loadBackbone(join(familyRoot("roberta"), "backbone"));
  await t.rejects(
    loadAdapter(join(familyRoot("distilbert"), "adapters", "a1"), roberta.config),
    /unexpected tensor distilbert\.transformer\.layer\.0\.output_adapters\.adapters\.a1\.\S+ of adapter 'a1' \(with a roberta backbone, AdapterHub saves them as …encoder\.layer\.<n>\.output\.adapters\.a1\.…\)/,
  );
});

t.test("another adaptation method is refused for its architecture, before any field of its own", async (t) => {
  const roberta = await loadBackbone(join(familyRoot("roberta"), "backbone"));
  const dir = await mkdtemp(join(tmpdir(), "lora-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await cp(join(familyRoot("roberta"), "adapters", "a1"), dir, { recursive: true });
  const saved = JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8"));
  // LoRAConfig as adapters saves it: its own fields come before `architecture`.
  saved.config = { alpha: 8, r: 8, selfattn_lora: true, intermediate_lora: false, architecture: "lora", dropout: 0 };
  await writeFile(join(dir, "adapter_config.json"), JSON.stringify(saved));
  await t.rejects(loadAdapter(dir, roberta.config), { code: "unsupported_config", message: /architecture "lora" is not supported \(supported: "bottleneck"\)/ });
});
