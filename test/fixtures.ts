import { existsSync, readFileSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseSafetensors, type Tensor } from "../src/formats/safetensors.js";

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

/** Expected outputs of one case (of the fixtures under `root`); int64 tensors come back as plain numbers. */
export function expectedOutputs(c: ParityCase, root = ENGINE_FIXTURES): { ids: number[][]; mask: number[][]; tensors: Map<string, Tensor> } {
  const bytes = readFileSync(join(root, c.file));
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

/**
 * TweetEval is never committed (its tasks keep the licences of their SemEval sources): it is read
 * from TWEETEVAL_DIR, else from ../shared/data/tweeteval beside the repository.
 */
export function tweetevalDir(): string {
  return resolve(REPO_ROOT, process.env.TWEETEVAL_DIR ?? join("..", "shared", "data", "tweeteval"));
}

/**
 * Why the checks on TweetEval's validation tweets cannot run here (a tap skip reason), or
 * undefined when every file they read is present.
 */
export function tweetevalMissing(tasks: readonly string[]): string | undefined {
  const dir = tweetevalDir();
  const missing = tasks.flatMap((task) => ["val_text.txt", "val_labels.txt"].map((file) => join(task, file))).filter((p) => !existsSync(join(dir, p)));
  if (missing.length === 0) return undefined;
  return `TweetEval not found: ${dir} lacks ${missing.join(", ")}; set TWEETEVAL_DIR to a TweetEval folder to run this check`;
}

/** A writable copy of the tiny library (its backbone path pointed back at the fixtures), removed at teardown. */
export async function writableLibrary(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "library-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  await cp(join(FIXTURES, "tiny-library"), root, { recursive: true, dereference: true });
  const manifest = JSON.parse(readFileSync(join(root, "library.json"), "utf8"));
  manifest.backbone = TINY_BACKBONE;
  await writeFile(join(root, "library.json"), JSON.stringify(manifest));
  return root;
}

/**
 * Copies a fixture save directory into <root>/incoming/<as>, transforming one weights file:
 * the way operators stage a retrained adapter before a path-based PUT.
 */
export async function stage(
  root: string,
  source: string,
  as: string,
  weightsFile: string,
  transform: (bytes: Buffer, dataStart: number) => void,
): Promise<string> {
  const dir = join(root, "incoming", as);
  await mkdir(join(root, "incoming"), { recursive: true });
  await cp(join(ENGINE_FIXTURES, source), dir, { recursive: true });
  const file = join(dir, weightsFile);
  const bytes = await readFile(file);
  transform(bytes, 8 + Number(bytes.readBigUInt64LE(0)));
  await writeFile(file, bytes);
  return `incoming/${as}`;
}

export function scaleFloats(factor: number) {
  return (bytes: Buffer, start: number) => {
    for (let o = start; o + 4 <= bytes.length; o += 4) bytes.writeFloatLE(bytes.readFloatLE(o) * factor, o);
  };
}
