import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { TokenBatch } from "../src/engine/packing.js";

export const CLS = 101;
export const SEP = 102;

/** Deterministic token ids [CLS] w... [SEP], every token real; must match bench_ids() in bench/reference.py. */
export function benchIds(batch: number, seq: number): TokenBatch {
  const ids = new BigInt64Array(batch * seq);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < seq; t++) ids[b * seq + t] = BigInt(1000 + ((b * 7919 + t * 104729) % 29000));
    ids[b * seq] = BigInt(CLS);
    ids[b * seq + seq - 1] = BigInt(SEP);
  }
  return { rows: batch, seqLen: seq, ids, mask: new BigInt64Array(batch * seq).fill(1n), lengths: Array(batch).fill(seq) };
}

const TASKS = ["sentiment", "emotion", "hate", "irony", "offensive"];

/**
 * Real tweets from the shared TweetEval copy, read at run time (never copied into the repository):
 * the validation texts of every task, interleaved task by task so any prefix is a mix.
 */
export function loadTweets(dir: string, limit = 4000): string[] {
  const perTask = TASKS.map((task) => {
    const file = join(dir, task, "val_text.txt");
    if (!existsSync(file)) return [];
    return readFileSync(file, "utf8")
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line.length > 0);
  });
  const out: string[] = [];
  for (let i = 0; out.length < limit && perTask.some((lines) => i < lines.length); i++) {
    for (const lines of perTask) if (i < lines.length && out.length < limit) out.push(lines[i]);
  }
  return out;
}
