import t from "tap";
import { DEFAULT_LIBRARY } from "../../src/config.js";
import { post, startServer } from "../server/harness.js";
import { argmax, FUSION_ROUTES, probabilitiesOverHttp, references, ROUTES, score, trainerMaxSeqLen, validation } from "./evaluation.js";

/**
 * Issue 4, acceptance 2: the server and the trainer agree. For each route of the default library
 * the same validation tweets the trainer recorded (see evaluation.ts) are sent over HTTP;
 * probabilities must match to 1e-3 and the score computed from the HTTP answers must equal the
 * trainer's. The server runs at the trainer's sequence length.
 */
const { url } = await startServer(t, { library: DEFAULT_LIBRARY, threads: 0, maxInputs: 64, maxSeqLen: trainerMaxSeqLen });

for (const route of ROUTES) {
  t.test(`${route}: HTTP answers equal the adapters model on 300 validation tweets`, async (t) => {
    const reference = references.get(route)!;
    const { texts, gold } = validation(reference.task);
    const probabilities = await probabilitiesOverHttp(t, url, route, reference.labels, reference.lines.map((line) => texts[line]));
    let worst = 0;
    probabilities.forEach((row, i) => row.forEach((v, c) => (worst = Math.max(worst, Math.abs(v - reference.probabilities[i][c])))));
    t.ok(worst <= 1e-3, `largest |Δp| ${worst.toExponential(2)} ≤ 1e-3 over ${probabilities.length} tweets`);

    const ours = score(reference.task, probabilities.map(argmax), reference.lines.map((l) => gold[l]), reference.labels.length);
    t.ok(Math.abs(ours - reference.score_300) < 1e-9, `score from HTTP ${ours.toFixed(4)} = trainer's ${reference.score_300.toFixed(4)}`);
  });
}

for (const route of FUSION_ROUTES) {
  t.test(`${route}: the score over the whole validation split from HTTP equals the trainer's`, async (t) => {
    const reference = references.get(route)!;
    const { texts, gold } = validation(reference.task);
    const probabilities = await probabilitiesOverHttp(t, url, route, reference.labels, texts);
    const ours = score(reference.task, probabilities.map(argmax), gold, reference.labels.length);
    t.ok(Math.abs(ours - reference.score_full_val) < 1e-9, `${gold.length} tweets: ${ours.toFixed(4)} = trainer's ${reference.score_full_val.toFixed(4)}`);
  });
}

t.test("obviously hateful and obviously friendly texts get sensible labels", async (t) => {
  const answer = await post(`${url}/v1/predict/hate-fusion`, {
    inputs: ["I hate all immigrants, they should be kicked out of this country, disgusting animals", "Thank you so much for the lovely birthday wishes, friends!"],
  });
  t.equal(answer.body.predictions[0].label, "hate", JSON.stringify(answer.body.predictions[0].scores));
  t.equal(answer.body.predictions[1].label, "not-hate", JSON.stringify(answer.body.predictions[1].scores));
  const sentiment = await post(`${url}/v1/predict/sentiment`, { inputs: ["Thank you so much for the lovely birthday wishes, friends!"] });
  t.equal(sentiment.body.predictions[0].label, "positive");
});
