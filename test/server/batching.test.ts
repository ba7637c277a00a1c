import t from "tap";
import { post, request, startServer } from "./harness.js";
import { parsePrometheusText, sampleValue } from "./prometheus.js";

// A generous wait lets requests that arrive together share a pass even on a busy machine.
const { url } = await startServer(t, { maxWaitMs: 20 });
const ROUTE = "dyn5";
const texts = Array.from({ length: 32 }, (_, i) => `request number ${i} ${"more words ".repeat(i % 5)}`.trim());
const predict = (text: string) => post(`${url}/v1/predict/${ROUTE}`, { inputs: text, raw_scores: true, explain: true });

t.test("32 concurrent requests share forward passes and get the answers they would alone", async (t) => {
  const together = await Promise.all(texts.map(predict));
  t.ok(together.every((r) => r.status === 200), "all answered 200");

  const metrics = parsePrometheusText((await request(`${url}/metrics`)).text);
  const passes = sampleValue(metrics, "fusion_batch_size_count", { fusion: ROUTE })!;
  const inputs = sampleValue(metrics, "fusion_batch_size_sum", { fusion: ROUTE })!;
  const singles = sampleValue(metrics, "fusion_batch_size_bucket", { fusion: ROUTE, le: "1" })!;
  t.equal(inputs, 32, "every input went through exactly one pass");
  t.ok(passes < 32 && singles < passes, `batches larger than 1 ran (${passes} passes for 32 inputs, ${singles} of size 1)`);

  let maxDiff = 0;
  for (const [i, text] of texts.entries()) {
    const alone = (await predict(text)).body.predictions[0];
    const shared = together[i].body.predictions[0];
    t.equal(shared.label, alone.label, `text ${i}: same label`);
    for (const label of Object.keys(alone.logits)) maxDiff = Math.max(maxDiff, Math.abs(shared.logits[label] - alone.logits[label]));
    alone.fusion_weights.forEach((layer: Record<string, number>, l: number) => {
      for (const a of Object.keys(layer)) maxDiff = Math.max(maxDiff, Math.abs(shared.fusion_weights[l][a] - layer[a]));
    });
  }
  const distinct = new Set(together.map((r) => JSON.stringify(r.body.predictions[0].logits)));
  t.equal(distinct.size, texts.length, "every text got its own answer (the comparison is not vacuous)");
  t.ok(maxDiff <= 1e-5, `logits and fusion weights equal to 1e-5 (max |diff| ${maxDiff.toExponential(2)})`);
});
