/**
 * Bench-only check: the engine's speed and memory on a RoBERTa-shaped backbone. The backbone is
 * all-MiniLM-L6-v2's weights laid out as a RoBERTa checkpoint (model_type roberta, padding index
 * 1, positions counted after it, one token type), so the graph takes the RoBERTa path with
 * real-valued weights of a known size; the routes are the default library's modules laid out for
 * it. Reports fused N = 5 / plain at 32×64 (blocks, two rounds, medians) and the RSS the engine and
 * the routes add.
 *
 *   npx tsx bench/experiments/roberta-shape.ts [--threads 2]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FusionEngine } from "../../src/engine/engine.js";
import { feedBytes, routeFeeds } from "../../src/engine/layout.js";
import { readSafetensors } from "../../src/formats/safetensors.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { benchIds } from "../inputs.js";
import { median } from "../stats.js";

const { values: args } = parseArgs({ options: { threads: { type: "string", default: "2" } } });
const threads = Number(args.threads);
const models = join(import.meta.dirname, "..", "..", "models");
const minilm = join(models, "backbones", "all-MiniLM-L6-v2");
const dir = mkdtempSync(join(tmpdir(), "roberta-shape-"));
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

const config = JSON.parse(readFileSync(join(minilm, "config.json"), "utf8"));
writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, model_type: "roberta", architectures: ["RobertaModel"], pad_token_id: 1, max_position_embeddings: 514, type_vocab_size: 1 }));
const tensors = await readSafetensors(join(minilm, "model.safetensors"));
const header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> = {};
const chunks: Buffer[] = [];
let offset = 0;
for (const [name, t] of tensors) {
  let { shape, data } = t;
  if (name === "embeddings.position_embeddings.weight") {
    // RoBERTa's table has padding_idx + 1 = 2 rows more: positions start after the padding index.
    const wider = new Float32Array((shape[0] + 2) * shape[1]);
    wider.set(data.subarray(0, shape[1]), 0);
    wider.set(data.subarray(0, shape[1]), shape[1]);
    wider.set(data, 2 * shape[1]);
    [shape, data] = [[shape[0] + 2, shape[1]], wider];
  }
  if (name === "embeddings.token_type_embeddings.weight") [shape, data] = [[1, shape[1]], data.subarray(0, shape[1])];
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  header[name] = { dtype: "F32", shape: [...shape], data_offsets: [offset, offset + bytes.length] };
  chunks.push(bytes);
  offset += bytes.length;
}
const json = Buffer.from(JSON.stringify(header));
const length = Buffer.alloc(8);
length.writeBigUInt64LE(BigInt(json.length));
writeFileSync(join(dir, "model.safetensors"), Buffer.concat([length, json, ...chunks]));

global.gc?.();
const rss = () => process.memoryUsage().rss / 2 ** 20;
const start = rss();
const backbone = await loadBackbone(dir);
console.log(`backbone: model_type ${backbone.config.modelType}, ${backbone.config.numLayers} layers × ${backbone.config.hiddenSize}`);
const plain = await FusionEngine.create(backbone, { device: "cpu", threads, variant: "plain" });
const fused = await FusionEngine.create(backbone, { device: "cpu", threads, variant: "fused", slots: 8 });
const withEngines = rss();
const library = await AdapterLibrary.open(models, (await loadBackbone(minilm)).config);
const routes = [...library.state.routes.values()];
const feeds = await Promise.all(routes.map((route) => routeFeeds(backbone.config, route)));
const batch = benchIds(32, 64);
for (const f of feeds) await fused.run(batch, f);
global.gc?.();
const withRoutes = rss();
const main = feeds[routes.findIndex((r) => r.name === "hate-fusion")];

async function time(run: () => Promise<unknown>): Promise<number> {
  await run();
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  return median(times);
}
const ratios: number[] = [];
for (let round = 1; round <= 2; round++) {
  const p = await time(() => plain.run(batch, {}));
  const f = await time(() => fused.run(batch, main));
  ratios.push(f / p);
  console.log(`round ${round}, 32×64: plain ${p.toFixed(1)} ms, fused N=5 (hate-fusion's modules) ${f.toFixed(1)} ms, ratio ${(f / p).toFixed(2)} (≤ 1.3)`);
}
const routeBytes = feeds.reduce((sum, f) => sum + feedBytes(f), 0) / 2 ** 20;
console.log(
  `RSS: ${start.toFixed(0)} MB before, +${(withEngines - start).toFixed(0)} MB with both engines (backbone file ${(offset / 2 ** 20).toFixed(0)} MB), ` +
    `+${(withRoutes - withEngines).toFixed(0)} MB after laying out and running ${routes.length} routes (their feeds: ${routeBytes.toFixed(1)} MB)`,
);
await Promise.all([plain.close(), fused.close()]);
