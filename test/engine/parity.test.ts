import { join } from "node:path";
import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FusionEngine } from "../../src/engine/engine.js";
import type { HeadOutput, TaggingOutput } from "../../src/engine/heads.js";
import { padBatch } from "../../src/engine/packing.js";
import { readout } from "../../src/engine/readout.js";
import { loadAdapter, loadFusion } from "../../src/library/adapterhub.js";
import { backboneFeeds, routeFeeds } from "../../src/engine/layout.js";
import { ENGINE_FIXTURES, TINY_BACKBONE, expectedOutputs, maxAbsDiff, parityCases } from "../fixtures.js";

const TOLERANCE = 1e-4;

const backbone = await loadBackbone(TINY_BACKBONE);
const d = backbone.config.hiddenSize;
const engines = {
  plain: await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "plain" }),
  fused: await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused" }),
  literal: await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "literal" }),
};
t.teardown(() => Promise.all(Object.values(engines).map((e) => e.close())));

for (const c of parityCases()) {
  const variants = c.kind === "plain" ? (["plain", "fused"] as const) : (["fused", "literal"] as const);
  for (const variant of variants) {
    t.test(`${c.name} (${variant} graph) matches the adapters library`, async (t) => {
      const expected = expectedOutputs(c);
      const sequences = expected.ids.map((row, b) => row.filter((_, i) => expected.mask[b][i] === 1));
      const adapterNames = c.adapters ?? (c.adapter ? [c.adapter] : []);
      const adapters = await Promise.all(adapterNames.map((n) => loadAdapter(join(ENGINE_FIXTURES, "adapters", n), backbone.config)));
      const fusion = c.fusion ? await loadFusion(join(ENGINE_FIXTURES, "fusions", c.fusion), backbone.config) : null;
      const head = fusion?.head ?? adapters[0]?.head ?? null;
      const batch = padBatch(sequences);
      const engine = engines[variant];
      const feeds = variant === "plain" ? {} : head ? await routeFeeds(backbone.config, { adapters, fusion }, variant) : await backboneFeeds(backbone.config);
      const result = await engine.run(batch, feeds);

      const hidden = expected.tensors.get("last_hidden_state")!;
      const T = expected.ids[0].length;
      let hiddenDiff = 0;
      sequences.forEach((s, b) => {
        const ours = result.hidden.subarray(b * batch.seqLen * d, (b * batch.seqLen + s.length) * d);
        const theirs = hidden.data.subarray(b * T * d, (b * T + s.length) * d);
        hiddenDiff = Math.max(hiddenDiff, maxAbsDiff(ours, theirs));
      });
      t.ok(hiddenDiff <= TOLERANCE, `last hidden state within ${TOLERANCE} (max |diff| ${hiddenDiff.toExponential(2)})`);

      const logits = expected.tensors.get("logits");
      if (head && logits) {
        const outputs = readout(head, result, batch, d, true);
        const C = head.labels.length;
        let logitDiff = 0;
        outputs.forEach((o, b) => {
          if ("tokens" in o.output) {
            (o.output as TaggingOutput).tokens.forEach((tok, tIdx) => {
              const ref = logits.data.subarray((b * T + tIdx) * C, (b * T + tIdx + 1) * C);
              logitDiff = Math.max(logitDiff, maxAbsDiff(tok.logits, ref));
            });
          } else {
            logitDiff = Math.max(logitDiff, maxAbsDiff((o.output as HeadOutput).logits, logits.data.subarray(b * C, (b + 1) * C)));
          }
        });
        t.ok(logitDiff <= TOLERANCE, `logits within ${TOLERANCE} (max |diff| ${logitDiff.toExponential(2)})`);

        const attention = expected.tensors.get("fusion_attentions");
        if (attention) {
          // [L, B, T, N] from the library; ours averaged per input, so compare the averages.
          const [L, , , N] = attention.shape;
          let diff = 0;
          outputs.forEach((o, b) => {
            for (let l = 0; l < L; l++) {
              for (let i = 0; i < N; i++) {
                let sum = 0;
                for (let tok = 0; tok < sequences[b].length; tok++) sum += attention.data[((l * batch.rows + b) * T + tok) * N + i];
                diff = Math.max(diff, Math.abs(sum / sequences[b].length - o.fusionWeights![l][i]));
              }
            }
          });
          t.ok(diff <= TOLERANCE, `fusion attention within ${TOLERANCE} (max |diff| ${diff.toExponential(2)})`);
        }
      }
    });
  }
}
