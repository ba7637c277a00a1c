import { readFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import { DEFAULT_LIBRARY } from "../../src/config.js";
import { FIXTURES, tweetevalDir } from "../fixtures.js";
import { post, startServer } from "../server/harness.js";


/**
 * Issue 4, acceptance 2: the server and the trainer agree. For each route of the default library,
 * python/train/reference.py recorded the `adapters` model's probabilities on the first 300
 * validation tweets (no text, only line numbers). The same tweets, read from the shared data,
 * are sent over HTTP; probabilities must match to 1e-3 and the score computed from the HTTP
 * answers must equal the trainer's.
 */
interface Reference {
  route: string;
  task: string;
  lines: number[];
  probabilities: number[][];
  labels: string[];
  score_300: number;
  score_full_val: number;
  max_length?: number;
}

const ROUTES = ["hate-fusion", "irony-fusion", "sentiment", "emotion", "offensive", "irony", "hate"];
const references = new Map<string, Reference>(
  ROUTES.map((route) => [route, JSON.parse(readFileSync(join(FIXTURES, "library-reference", `${route}.json`), "utf8"))]),
);
// The trainer evaluated without cutting long tweets (a few exceed the server's default of 128
// tokens), so the server runs at the trainer's sequence length here.
const maxSeqLen = Math.max(...[...references.values()].map((r) => r.max_length ?? 128));
const { url } = await startServer(t, { library: DEFAULT_LIBRARY, threads: 0, maxInputs: 64, maxSeqLen });

function f1(predicted: number[], gold: number[], label: number): number {
  let tp = 0, fp = 0, fn = 0;
  predicted.forEach((p, i) => {
    if (p === label && gold[i] === label) tp++;
    else if (p === label) fp++;
    else if (gold[i] === label) fn++;
  });
  return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
}

/** TweetEval's metric: F1 of the irony class for irony, macro-F1 otherwise. */
function score(task: string, predicted: number[], gold: number[], classes: number): number {
  if (task === "irony") return f1(predicted, gold, 1);
  return Array.from({ length: classes }, (_, c) => f1(predicted, gold, c)).reduce((a, b) => a + b, 0) / classes;
}

async function probabilitiesOverHttp(t: { equal: (a: unknown, b: unknown, m?: string) => void }, route: string, labels: string[], inputs: string[]) {
  const probabilities: number[][] = [];
  for (let i = 0; i < inputs.length; i += 50) {
    const answer = await post(`${url}/v1/predict/${route}`, { inputs: inputs.slice(i, i + 50) });
    t.equal(answer.status, 200, answer.text.slice(0, 200));
    for (const p of answer.body.predictions) probabilities.push(labels.map((label) => p.scores[label]));
  }
  return probabilities;
}

const argmax = (row: number[]) => row.indexOf(Math.max(...row));

function validation(task: string) {
  const dir = join(tweetevalDir(), task);
  const texts = readFileSync(join(dir, "val_text.txt"), "utf8").split("\n");
  const gold = readFileSync(join(dir, "val_labels.txt"), "utf8").split("\n").filter((l) => l.trim() !== "").map(Number);
  return { texts: texts.slice(0, gold.length), gold };
}

for (const route of ROUTES) {
  t.test(`${route}: HTTP answers equal the adapters model on 300 validation tweets`, async (t) => {
    const reference = references.get(route)!;
    const { texts, gold } = validation(reference.task);
    const probabilities = await probabilitiesOverHttp(t, route, reference.labels, reference.lines.map((line) => texts[line]));
    let worst = 0;
    probabilities.forEach((row, i) => row.forEach((v, c) => (worst = Math.max(worst, Math.abs(v - reference.probabilities[i][c])))));
    t.ok(worst <= 1e-3, `largest |Δp| ${worst.toExponential(2)} ≤ 1e-3 over ${probabilities.length} tweets`);

    const ours = score(reference.task, probabilities.map(argmax), reference.lines.map((l) => gold[l]), reference.labels.length);
    t.ok(Math.abs(ours - reference.score_300) < 1e-9, `score from HTTP ${ours.toFixed(4)} = trainer's ${reference.score_300.toFixed(4)}`);
  });
}

for (const route of ["hate-fusion", "irony-fusion"]) {
  t.test(`${route}: the score over the whole validation split from HTTP equals the trainer's`, async (t) => {
    const reference = references.get(route)!;
    const { texts, gold } = validation(reference.task);
    const probabilities = await probabilitiesOverHttp(t, route, reference.labels, texts);
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
