import t from "tap";
import { DEFAULT_LIBRARY } from "../../src/config.js";
import { post, startServer } from "../server/harness.js";
import {
  argmax,
  FUSION_ROUTES,
  probabilitiesOverHttp,
  references,
  ROUTES,
  sampleReferences,
  samples,
  score,
  trainerMaxSeqLen,
  tweetevalSkip,
  validation,
} from "./evaluation.js";

/**
 * The server and the `adapters` library agree on the default library. For each route the sample
 * texts written for this project, and, where TweetEval is at hand, the validation tweets the trainer
 * recorded, are sent over HTTP; probabilities must match the `adapters` model's to 1e-3, and the
 * TweetEval score computed from the HTTP answers must equal the trainer's. The server runs at the
 * trainer's sequence length.
 */
const MAX_DIFF = 1e-3;

const { url } = await startServer(t, { library: DEFAULT_LIBRARY, threads: 0, maxInputs: 64, maxSeqLen: trainerMaxSeqLen });

function largestDiff(ours: number[][], theirs: number[][]): number {
  let worst = 0;
  ours.forEach((row, i) => row.forEach((v, c) => (worst = Math.max(worst, Math.abs(v - theirs[i][c])))));
  return worst;
}

for (const route of ROUTES) {
  t.test(`${route}: HTTP answers equal the adapters model on the ${samples.length} sample texts`, async (t) => {
    const reference = sampleReferences.get(route)!;
    const probabilities = await probabilitiesOverHttp(t, url, route, reference.labels, samples);
    const worst = largestDiff(probabilities, reference.probabilities);
    t.ok(worst <= MAX_DIFF, `largest |Δp| ${worst.toExponential(2)} ≤ ${MAX_DIFF}`);
    t.same(probabilities.map(argmax), reference.probabilities.map(argmax), "the same label for every text");
  });
}

for (const route of ROUTES) {
  t.test(`${route}: HTTP answers equal the adapters model on 300 TweetEval validation tweets`, { skip: tweetevalSkip(route) }, async (t) => {
    const reference = references.get(route)!;
    const { texts, gold } = validation(reference.task);
    const probabilities = await probabilitiesOverHttp(t, url, route, reference.labels, reference.lines.map((line) => texts[line]));
    const worst = largestDiff(probabilities, reference.probabilities);
    t.ok(worst <= MAX_DIFF, `largest |Δp| ${worst.toExponential(2)} ≤ ${MAX_DIFF} over ${probabilities.length} tweets`);

    const ours = score(reference.task, probabilities.map(argmax), reference.lines.map((l) => gold[l]), reference.labels.length);
    t.ok(Math.abs(ours - reference.score_300) < 1e-9, `score from HTTP ${ours.toFixed(4)} = trainer's ${reference.score_300.toFixed(4)}`);
  });
}

for (const route of FUSION_ROUTES) {
  t.test(`${route}: the score over the whole TweetEval validation split from HTTP equals the trainer's`, { skip: tweetevalSkip(route) }, async (t) => {
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
