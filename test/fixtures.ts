import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseSafetensors, type Tensor } from "../src/engine/safetensors.js";

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "fixtures");
export const ENGINE_FIXTURES = join(FIXTURES, "engine");
export const TINY_BACKBONE = join(ENGINE_FIXTURES, "backbone");

export interface ParityCase {
  name: string;
  kind: "plain" | "adapter" | "fusion";
  adapter?: string;
  fusion?: string;
  adapters?: string[];
  head?: string;
  file: string;
}

export function parityCases(): ParityCase[] {
  return JSON.parse(readFileSync(join(ENGINE_FIXTURES, "cases.json"), "utf8"));
}

/** Expected outputs of one case; int64 tensors come back as plain numbers. */
export function expectedOutputs(c: ParityCase): { ids: number[][]; mask: number[][]; tensors: Map<string, Tensor> } {
  const bytes = readFileSync(join(ENGINE_FIXTURES, c.file));
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString("utf8"));
  const body = bytes.subarray(8 + Number(bytes.readBigUInt64LE(0)));
  const int64 = (name: string): number[][] => {
    const { shape, data_offsets } = header[name];
    const raw = body.subarray(data_offsets[0], data_offsets[1]);
    return Array.from({ length: shape[0] }, (_, b) =>
      Array.from({ length: shape[1] }, (_, t) => Number(raw.readBigInt64LE(8 * (b * shape[1] + t)))),
    );
  };
  return { ids: int64("input_ids"), mask: int64("attention_mask"), tensors: parseSafetensors(bytes, c.file) };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

const REPO_ROOT = join(FIXTURES, "..", "..");

/** TweetEval lives outside the repository (it may not be committed): ../shared/data/tweeteval, or TWEETEVAL_DIR. */
export function tweetevalDir(): string {
  return resolve(REPO_ROOT, process.env.TWEETEVAL_DIR ?? join("..", "shared", "data", "tweeteval"));
}
