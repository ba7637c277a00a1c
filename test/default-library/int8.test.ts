import t from "tap";
import { DEFAULT_LIBRARY, loadConfig } from "../../src/config.js";
import { resolveInt8Mode } from "../../src/engine/int8-mode.js";
import { startServer } from "../server/harness.js";
import { argmax, probabilitiesOverHttp, references, ROUTES, sampleReferences, samples, score, trainerMaxSeqLen, tweetevalSkip, validation } from "./evaluation.js";

/**
 * What --precision int8 costs in accuracy, per route of the default library, against the float32
 * `adapters` model (which the float32 server reproduces to 1e-3, see agreement.test.ts):
 * - on the sample texts written for this project (always): at least MIN_SAMPLE_AGREEMENT of the
 *   labels are float32's, and a class probability moves by MAX_SAMPLE_MEAN_DIFF on average and by
 *   MAX_SAMPLE_DIFF at most;
 * - where TweetEval is at hand, over the whole validation split the TweetEval score moves by at
 *   most MAX_SCORE_CHANGE, and on the trainer's 300 recorded tweets at least MIN_AGREEMENT of the
 *   labels are the same.
 * The limits guard against a broken int8 path (a wrong scale, a transposed weight or a saturating
 * kernel collapses them all); they do not make int8 free: the README (Precision) reports what it
 * costs. Two points on TweetEval, because on the small splits a handful of changed labels moves the
 * score that much (emotion: 374 tweets, macro-F1 over 4 classes; per-tensor activation scales,
 * tried first, measured −1.5 there).
 * The weights are 8-bit or 7-bit as the CPU decides (int8-mode.ts); FUSION_INT8_WEIGHTS=7 (or 8)
 * measures the other range, as the server's --int8-weights does.
 */
const MAX_SCORE_CHANGE = 0.02;
const MIN_AGREEMENT = 0.96;
const MIN_SAMPLE_AGREEMENT = 0.95;
const MAX_SAMPLE_MEAN_DIFF = 0.02;
const MAX_SAMPLE_DIFF = 0.15;

const { int8Weights } = loadConfig([], { FUSION_INT8_WEIGHTS: process.env.FUSION_INT8_WEIGHTS });
const mode = await resolveInt8Mode(int8Weights);
t.comment(`int8 weights ${mode.weightBits}-bit (${int8Weights}; 8-bit products ${mode.saturatesAt8Bits ? "saturate" : "exact"} on this CPU)`);
const { url } = await startServer(t, { library: DEFAULT_LIBRARY, precision: "int8", int8Weights, threads: 0, maxInputs: 64, maxSeqLen: trainerMaxSeqLen });

for (const route of ROUTES) {
  t.test(`${route}: int8 answers on the ${samples.length} sample texts stay close to the float32 model`, async (t) => {
    const reference = sampleReferences.get(route)!;
    const probabilities = await probabilitiesOverHttp(t, url, route, reference.labels, samples);
    const same = probabilities.filter((row, i) => argmax(row) === argmax(reference.probabilities[i])).length;
    let worst = 0;
    let total = 0;
    probabilities.forEach((row, i) =>
      row.forEach((p, c) => {
        const diff = Math.abs(p - reference.probabilities[i][c]);
        worst = Math.max(worst, diff);
        total += diff;
      }),
    );
    const agreement = same / samples.length;
    t.ok(agreement >= MIN_SAMPLE_AGREEMENT, `same label as float32 on ${same}/${samples.length} texts (${(100 * agreement).toFixed(1)}%; limit ${100 * MIN_SAMPLE_AGREEMENT}%)`);
    const mean = total / (samples.length * reference.labels.length);
    t.ok(mean <= MAX_SAMPLE_MEAN_DIFF && worst <= MAX_SAMPLE_DIFF, `|Δp| mean ${mean.toFixed(4)} (limit ${MAX_SAMPLE_MEAN_DIFF}), largest ${worst.toFixed(3)} (limit ${MAX_SAMPLE_DIFF})`);
  });
}

for (const route of ROUTES) {
  t.test(`${route}: int8 answers on TweetEval stay close to the float32 model`, { skip: tweetevalSkip(route) }, async (t) => {
    const reference = references.get(route)!;
    const { texts, gold } = validation(reference.task);
    const probabilities = await probabilitiesOverHttp(t, url, route, reference.labels, texts);
    const predicted = probabilities.map(argmax);

    const full = score(reference.task, predicted, gold, reference.labels.length);
    const change = full - reference.score_full_val;
    t.ok(Math.abs(change) <= MAX_SCORE_CHANGE, `${gold.length} tweets: int8 ${full.toFixed(4)}, float32 ${reference.score_full_val.toFixed(4)} (${change >= 0 ? "+" : ""}${(100 * change).toFixed(2)} points; limit ±${100 * MAX_SCORE_CHANGE})`);

    let same = 0;
    let worst = 0;
    let total = 0;
    reference.lines.forEach((line, i) => {
      if (predicted[line] === argmax(reference.probabilities[i])) same++;
      probabilities[line].forEach((p, c) => {
        const diff = Math.abs(p - reference.probabilities[i][c]);
        worst = Math.max(worst, diff);
        total += diff;
      });
    });
    const agreement = same / reference.lines.length;
    const mean = total / (reference.lines.length * reference.labels.length);
    t.ok(agreement >= MIN_AGREEMENT, `same label as float32 on ${same}/${reference.lines.length} recorded tweets (${(100 * agreement).toFixed(1)}%; limit ${100 * MIN_AGREEMENT}%), |Δp| mean ${mean.toFixed(4)}, largest ${worst.toFixed(3)}`);
  });
}
