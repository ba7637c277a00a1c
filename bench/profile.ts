/**
 * Where the engine's time goes: ONNX Runtime's own profiler on the shipped graphs (plain, fused
 * N=2/5/8, literal N=5) at one shape, kernel time summed by op type. Not part of `npm run bench`
 * (profiling slows every kernel down a little); run it on a quiet machine after the bench weights
 * exist (bench/results/weights, written by the first `npm run bench`):
 *
 *   npx tsx bench/profile.ts [--threads 2] [--shape 32x64] [--runs 5] [--precision int8]
 *
 * Also prints the achieved GFLOP/s of the plain backbone's matrix products, to tell how far the
 * backbone is from this CPU's float32 peak.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import ort from "onnxruntime-node";
import { loadBackbone } from "../src/engine/backbone.js";
import { buildBertGraph, type GraphVariant } from "../src/engine/bert-graph.js";
import type { Precision } from "../src/engine/products.js";
import { sessionOptions } from "../src/engine/engine.js";
import { resolveInt8Mode } from "../src/engine/int8-mode.js";
import { quantizeRouteFeeds, type RouteFeeds } from "../src/engine/layout.js";
import { loadRoutes } from "./engine-bench.js";
import { benchIds } from "./inputs.js";
import { othersProbe, waitForQuiet } from "./machine.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const RESULTS = join(ROOT, "bench", "results");
const { values: args } = parseArgs({
  options: { threads: { type: "string" }, shape: { type: "string", default: "32x64" }, runs: { type: "string", default: "5" }, precision: { type: "string", default: "float32" } },
});
const threads = args.threads ? Number(args.threads) : availableParallelism();
const runs = Number(args.runs);
const [B, T] = args.shape!.split("x").map(Number);
const precision = args.precision as Precision;
const int8 = precision === "int8" ? await resolveInt8Mode() : undefined;

const backbone = await loadBackbone(join(ROOT, "models", "backbones", "all-MiniLM-L6-v2"));
const fused = await loadRoutes(backbone, join(RESULTS, "weights"), "fused");
const literal = await loadRoutes(backbone, join(RESULTS, "weights"), "literal");
type Case = [string, GraphVariant, RouteFeeds];
const cases: Case[] = ([
  ["plain", "plain", {}],
  ["fused2", "fused", fused.get(2)!.feeds],
  ["fused5", "fused", fused.get(5)!.feeds],
  ["fused8", "fused", fused.get(8)!.feeds],
  ["literal5", "literal", literal.get(5)!.feeds],
] as Case[])
  .filter(([, variant]) => precision === "float32" || variant !== "literal")
  .map(([name, variant, feeds]): Case => [name, variant, int8 && variant === "fused" ? quantizeRouteFeeds(feeds, backbone.config.numLayers, int8.weightMax) : feeds]);
const dir = join(RESULTS, "profile");
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const batch = benchIds(B, T);
const inputs = (feeds: RouteFeeds) => ({
  input_ids: new ort.Tensor("int64", batch.ids, [B, T]),
  attention_mask: new ort.Tensor("int64", batch.mask, [B, T]),
  ...Object.fromEntries(Object.entries(feeds).map(([name, f]) => [name, new ort.Tensor(f.type, f.data, f.dims)])),
});

interface Event {
  cat: string;
  name: string;
  dur: number;
  ts: number;
  args?: { op_name?: string };
}
const table = new Map<string, Map<string, number>>();
for (const [name, variant, feeds] of cases) {
  const session = await ort.InferenceSession.create(buildBertGraph(backbone, variant, int8 ?? "float32"), {
    ...sessionOptions({ device: "cpu", threads, variant, precision }),
    enableProfiling: true,
    profileFilePrefix: join(dir, name),
  });
  // Other processes on the CPU distort a profile: wait them out and profile again (up to 3 times).
  for (let attempt = 0; ; attempt++) {
    const stop = othersProbe();
    for (let i = 0; i < 2 + runs; i++) await session.run(inputs(variant === "plain" ? {} : feeds));
    const others = stop();
    if (others < 25 || attempt >= 3) break;
    console.error(`${name}: other processes used ${others.toFixed(0)}% of a core meanwhile; profiling again`);
    await waitForQuiet(25, 90_000);
  }
  session.endProfiling();
  await session.release();
  const file = readdirSync(dir).find((f) => f.startsWith(`${name}_`) && f.endsWith(".json"))!;
  const events = JSON.parse(readFileSync(join(dir, file), "utf8")) as Event[];
  const modelRuns = events.filter((e) => e.cat === "Session" && e.name === "model_run");
  const timed = modelRuns.slice(-runs); // the last attempt's timed runs
  const byOp = new Map<string, number>();
  for (const e of events) {
    if (e.cat !== "Node" || !e.name.endsWith("_kernel_time") || e.ts < timed[0].ts) continue;
    const op = e.args?.op_name ?? "?";
    byOp.set(op, (byOp.get(op) ?? 0) + e.dur / 1000 / runs);
  }
  byOp.set("(whole run)", timed.reduce((a, e) => a + e.dur / 1000, 0) / runs);
  table.set(name, byOp);
}

const names = [...table.keys()];
const ops = [...new Set([...table.values()].flatMap((m) => [...m.keys()]))]
  .filter((op) => op !== "(whole run)")
  .sort((a, b) => (table.get(names.at(-1)!)!.get(b) ?? 0) - (table.get(names.at(-1)!)!.get(a) ?? 0))
  .filter((op) => names.some((n) => (table.get(n)!.get(op) ?? 0) >= 0.1));
console.log(`ORT profile, ${precision}, ${B}×${T}, ${threads} threads: ms per run by op type (mean of ${runs} runs)\n`);
console.log(`| op | ${names.join(" | ")} |`);
console.log(`|---|${names.map(() => "---:").join("|")}|`);
for (const op of [...ops, "(whole run)"]) console.log(`| ${op} | ${names.map((n) => (table.get(n)!.get(op) ?? 0).toFixed(1)).join(" | ")} |`);

// Multiply-adds of the plain backbone per token: QKV 3d², attention output d², FFN 2·d·I, attention 2·T·d.
const { hiddenSize: d, intermediateSize: I, numLayers: L } = backbone.config;
const flops = 2 * B * T * L * (4 * d * d + 2 * d * I + 2 * T * d);
const plainMs = table.get("plain")!.get("(whole run)")!;
console.log(`\nplain backbone: ${(flops / 1e9).toFixed(1)} GFLOP per run in ${plainMs.toFixed(1)} ms = ${(flops / plainMs / 1e6).toFixed(0)} GFLOP/s (profiled)`);
