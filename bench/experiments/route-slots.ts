/**
 * Bench-only experiment: what a pass costs as a function of the graph's route slots
 * (--route-slots), on the default library's backbone. One fused N=5 route (hate-fusion's
 * weights) fills the pass; the other slots are idle, as in a pass of a single route, which is the
 * worst case for the slots' overhead. Engines with 1, 4 and 8 slots are timed in blocks, in two
 * rounds, median of each block; and a pass of 4 routes on the 8-slot engine against the same rows
 * in 4 single-route passes.
 *
 *   npx tsx bench/experiments/route-slots.ts [--threads 2]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FusionEngine } from "../../src/engine/engine.js";
import type { TokenBatch } from "../../src/engine/packing.js";
import { routeFeeds } from "../../src/engine/layout.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { benchIds } from "../inputs.js";
import { median } from "../stats.js";

const { values: args } = parseArgs({ options: { threads: { type: "string", default: "2" } } });
const threads = Number(args.threads);
const models = join(import.meta.dirname, "..", "..", "models");
const backbone = await loadBackbone(join(models, "backbones", "all-MiniLM-L6-v2"));
const library = await AdapterLibrary.open(models, backbone.config);
const routes = await Promise.all(["hate-fusion", "irony-fusion", "sentiment", "hate"].map((name) => routeFeeds(backbone.config, library.route(name))));
const engines = new Map<number, FusionEngine>();
for (const slots of [1, 4, 8]) engines.set(slots, await FusionEngine.create(backbone, { device: "cpu", threads, variant: "fused", slots }));

async function time(run: () => Promise<unknown>, reps: number): Promise<number> {
  for (let i = 0; i < 2; i++) await run();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  return median(times);
}

const shapes: [number, number, number][] = [
  [1, 16, 40],
  [8, 36, 15],
  [32, 36, 7],
];
for (const round of [1, 2]) {
  for (const [b, t, reps] of shapes) {
    const batch = benchIds(b, t);
    const cells: string[] = [];
    for (const [slots, engine] of engines) cells.push(`${slots} slot(s) ${(await time(() => engine.runPass(batch, [{ feeds: routes[0], inputs: b }]), reps)).toFixed(2)} ms`);
    console.log(`round ${round}, one route, ${b}×${t}: ${cells.join(", ")}`);
  }
  const rows = 8;
  const batch = benchIds(4 * rows, 36);
  const slice = (i: number): TokenBatch => ({ ...benchIds(rows, 36) , ids: batch.ids.slice(i * rows * 36, (i + 1) * rows * 36) });
  const mixed = await time(() => engines.get(8)!.runPass(batch, routes.map((feeds) => ({ feeds, inputs: rows }))), 7);
  const apart = await time(async () => {
    for (const [i, feeds] of routes.entries()) await engines.get(1)!.run(slice(i), feeds);
  }, 7);
  console.log(`round ${round}, 4 routes × ${rows} rows × 36 tokens: one pass on 8 slots ${mixed.toFixed(1)} ms, four single-route passes ${apart.toFixed(1)} ms`);
}
await Promise.all([...engines.values()].map((e) => e.close()));
