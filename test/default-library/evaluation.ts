import type { Test } from "tap";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES, tweetevalDir, tweetevalMissing } from "../fixtures.js";
import { post } from "../server/harness.js";

/**
 * What python/train/reference.py recorded for one route of the default library: the `adapters`
 * model's probabilities on the first 300 validation tweets (line numbers, no text) and its scores.
 */
export interface Reference {
  route: string;
  task: string;
  lines: number[];
  probabilities: number[][];
  labels: string[];
  score_300: number;
  score_full_val: number;
  max_length?: number;
}

export const ROUTES = ["hate-fusion", "irony-fusion", "sentiment", "emotion", "offensive", "irony", "hate"];
export const FUSION_ROUTES = ["hate-fusion", "irony-fusion"];

export const references = new Map<string, Reference>(
  ROUTES.map((route) => [route, JSON.parse(readFileSync(join(FIXTURES, "library-reference", `${route}.json`), "utf8"))]),
);

/**
 * The texts of samples.json, written for this project, and what python/train/reference.py
 * recorded for them from the saved library: per route its labels and probabilities, text by text.
 * They keep the default library's checks meaningful where TweetEval is not at hand.
 */
export const samples: string[] = JSON.parse(readFileSync(join(FIXTURES, "library-reference", "samples.json"), "utf8")).texts;
export const sampleReferences: ReadonlyMap<string, { labels: string[]; probabilities: number[][] }> = new Map(
  Object.entries(JSON.parse(readFileSync(join(FIXTURES, "library-reference", "samples-reference.json"), "utf8")).routes),
);

/** Why the TweetEval checks of a route are skipped (a tap skip reason), or false when they run. */
export const tweetevalSkip = (route: string): string | false => tweetevalMissing([references.get(route)!.task]) ?? false;

/** The trainer evaluated without cutting long tweets (a few exceed the server's default of 128 tokens). */
export const trainerMaxSeqLen = Math.max(...[...references.values()].map((r) => r.max_length ?? 128));

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
export function score(task: string, predicted: number[], gold: number[], classes: number): number {
  if (task === "irony") return f1(predicted, gold, 1);
  return Array.from({ length: classes }, (_, c) => f1(predicted, gold, c)).reduce((a, b) => a + b, 0) / classes;
}

export const argmax = (row: number[]) => row.indexOf(Math.max(...row));

/** Probabilities in the order of `labels`, one row per input, asked 50 inputs per request. */
export async function probabilitiesOverHttp(t: Pick<Test, "equal">, url: string, route: string, labels: string[], inputs: string[]) {
  const probabilities: number[][] = [];
  for (let i = 0; i < inputs.length; i += 50) {
    const answer = await post(`${url}/v1/predict/${route}`, { inputs: inputs.slice(i, i + 50) });
    t.equal(answer.status, 200, answer.text.slice(0, 200));
    for (const p of answer.body.predictions) probabilities.push(labels.map((label) => p.scores[label]));
  }
  return probabilities;
}

/** A task's validation split, read from the shared data (never copied into the repository). */
export function validation(task: string) {
  const dir = join(tweetevalDir(), task);
  const texts = readFileSync(join(dir, "val_text.txt"), "utf8").split("\n");
  const gold = readFileSync(join(dir, "val_labels.txt"), "utf8").split("\n").filter((l) => l.trim() !== "").map(Number);
  return { texts: texts.slice(0, gold.length), gold };
}
