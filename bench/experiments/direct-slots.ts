/**
 * Bench-only experiment: what serving many routes in one pass costs against serving one, on the
 * default library's backbone, with the server's default slots (8 route, 8 direct). The same 16
 * inputs (one 32-token input per route, as under traffic spread over many routes) run as:
 *   one route, folded         16 inputs in slot 0
 *   one route, direct         16 inputs in one direct slot: the unfolded form's arithmetic, one slot
 *   8 folded + 8 direct       one input in each of 16 slots
 * The third against the mean of the first two is what the slots cost beyond their arithmetic: the
 * fixed cost of each slot's kernels. Blocks in two rounds, median of each.
 *
 *   npx tsx bench/experiments/direct-slots.ts [--threads 2]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FusionEngine, type SlotFeeds } from "../../src/engine/engine.js";
import { routeFeeds } from "../../src/engine/layout.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { benchIds } from "../inputs.js";
import { median } from "../stats.js";

const { values: args } = parseArgs({ options: { threads: { type: "string", default: "2" } } });
const models = join(import.meta.dirname, "..", "..", "models");
const backbone = await loadBackbone(join(models, "backbones", "all-MiniLM-L6-v2"));
const library = await AdapterLibrary.open(models, backbone.config);
const engine = await FusionEngine.create(backbone, { device: "cpu", threads: Number(args.threads), variant: "fused", slots: 8, directSlots: 8 });
const modules = library.route("hate-fusion");
const folded = await routeFeeds(backbone.config, modules);
const direct = engine.directFeeds(modules);

const inputs = 16;
const batch = benchIds(inputs, 32);
const cases: [string, SlotFeeds[]][] = [
  ["one route, folded", [{ feeds: folded, inputs }]],
  ["one route, direct", [{ feeds: direct, inputs, direct: true }]],
  ["8 folded + 8 direct, one input each", [...Array.from({ length: 8 }, () => ({ feeds: folded, inputs: 1 })), ...Array.from({ length: 8 }, () => ({ feeds: direct, inputs: 1, direct: true }))]],
];

async function time(slots: SlotFeeds[], reps: number): Promise<number> {
  for (let i = 0; i < 3; i++) await engine.runPass(batch, slots);
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await engine.runPass(batch, slots);
    times.push(performance.now() - t0);
  }
  return median(times);
}

for (const round of [1, 2]) {
  const ms = new Map<string, number>();
  for (const [name, slots] of cases) ms.set(name, await time(slots, 15));
  const [a, e, many] = [...ms.values()];
  console.log(`round ${round}, ${inputs} inputs × 32 tokens: ${[...ms].map(([name, t]) => `${name} ${t.toFixed(1)} ms`).join(", ")}`);
  console.log(`  many slots / one folded route ${(many / a).toFixed(2)}; many slots / the mean of one folded and one direct route ${(many / ((a + e) / 2)).toFixed(2)}`);
}
await engine.close();
