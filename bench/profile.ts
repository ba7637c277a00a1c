/**
 * Where the fused graph's time goes, and what the proposed bottleneck-space fusion saves
 * (bench/proto/bottleneck-fusion.ts). Not part of `npm run bench`; run it on a quiet machine:
 *
 *   npx tsx bench/profile.ts [--threads 2] [--shapes 1x16,8x64,32x64] [--quick]
 *
 * 1. Checks the prototype against the shipped fused graph (same weights, max |diff|).
 * 2. Times plain, fused N=1,2,5,8 and prototype N=1,2,5,8 round-robin per shape.
 * 3. ONNX Runtime's own profiler on plain, fused and prototype at 32×64 (N=5 and 8): kernel time by op type.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import ort from "onnxruntime-node";
import { loadBackbone } from "../src/engine/backbone.js";
import { buildBertGraph, GRAPH_OUTPUTS } from "../src/engine/bert-graph.js";
import type { RouteFeeds, TokenBatch } from "../src/engine/engine.js";
import { FUSION_SIZES, loadRoutes } from "./engine-bench.js";
import { benchIds } from "./inputs.js";
import { bottleneckFeeds, buildBottleneckGraph } from "./proto/bottleneck-fusion.js";
import { FULL, QUICK, median, timeInBlocks } from "./stats.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const RESULTS = join(ROOT, "bench", "results");
const WEIGHTS = join(RESULTS, "weights");
const { values: args } = parseArgs({
  options: {
    threads: { type: "string" },
    shapes: { type: "string", default: "1x16,8x64,32x64,32x128" },
    quick: { type: "boolean", default: false },
  },
});
const threads = args.threads ? Number(args.threads) : availableParallelism();
const policy = args.quick ? QUICK : FULL;

const backbone = await loadBackbone(join(ROOT, "models", "backbones", "all-MiniLM-L6-v2"));
const L = backbone.config.numLayers;
const options = (profilePrefix?: string): ort.InferenceSession.SessionOptions => ({
  executionProviders: ["cpu"],
  graphOptimizationLevel: "all",
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  executionMode: "sequential", // as src/engine/engine.ts
  ...(profilePrefix ? { enableProfiling: true, profileFilePrefix: profilePrefix } : {}),
});
const graphs = { plain: buildBertGraph(backbone, "plain"), fused: buildBertGraph(backbone, "fused"), proto: buildBottleneckGraph(backbone) };
const routes = await loadRoutes(backbone, WEIGHTS, "fused");
const fusedFeeds = new Map([...routes].map(([n, r]) => [n, r.feeds]));
const protoFeeds = new Map([...routes].map(([n, r]) => [n, bottleneckFeeds(r.feeds, L)]));

const inputsOf = (batch: TokenBatch, feeds: RouteFeeds) => ({
  input_ids: new ort.Tensor("int64", batch.ids, [batch.batch, batch.seqLen]),
  attention_mask: new ort.Tensor("int64", batch.mask, [batch.batch, batch.seqLen]),
  ...feeds,
});

// 1. Same result.
{
  const fused = await ort.InferenceSession.create(graphs.fused, options());
  const proto = await ort.InferenceSession.create(graphs.proto, options());
  const batch = benchIds(4, 24);
  for (const n of FUSION_SIZES) {
    const a = await fused.run(inputsOf(batch, fusedFeeds.get(n)!));
    const b = await proto.run(inputsOf(batch, protoFeeds.get(n)!));
    const diff = (k: string) => {
      const x = a[k].data as Float32Array;
      const y = b[k].data as Float32Array;
      let m = 0;
      for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
      return m;
    };
    console.log(`prototype vs fused, N=${n}: max |diff| hidden ${diff(GRAPH_OUTPUTS.hidden).toExponential(1)}, fusion probs ${diff(GRAPH_OUTPUTS.fusionProbs).toExponential(1)}`);
  }
  await fused.release();
  await proto.release();
}

// 2. Timing.
{
  const plain = await ort.InferenceSession.create(graphs.plain, options());
  const fused = await ort.InferenceSession.create(graphs.fused, options());
  const proto = await ort.InferenceSession.create(graphs.proto, options());
  for (const shape of args.shapes!.split(",")) {
    const [b, t] = shape.split("x").map(Number);
    const batch = benchIds(b, t);
    const cases: [string, () => Promise<unknown>][] = [["plain", () => plain.run(inputsOf(batch, {}))]];
    for (const n of FUSION_SIZES) cases.push([`fused${n}`, () => fused.run(inputsOf(batch, fusedFeeds.get(n)!))]);
    for (const n of FUSION_SIZES) cases.push([`proto${n}`, () => proto.run(inputsOf(batch, protoFeeds.get(n)!))]);
    const { times } = await timeInBlocks(
      cases.map(([label, run]) => ({ label, run })),
      policy,
      async (_what, measure) => ({ value: await measure(), othersPercent: 0 }),
    );
    const med = Object.fromEntries(cases.map(([name], i) => [name, median(times[i])]));
    console.log(`\n${shape} (median ms of ${times[0].length} runs): ` + cases.map(([name]) => `${name} ${med[name].toFixed(1)}`).join(", "));
    console.log(
      `  fused5/plain ${(med.fused5 / med.plain).toFixed(3)}, fused8/fused2 ${(med.fused8 / med.fused2).toFixed(3)}; ` +
        `proto5/plain ${(med.proto5 / med.plain).toFixed(3)}, proto8/proto2 ${(med.proto8 / med.proto2).toFixed(3)}, fused5/proto5 ${(med.fused5 / med.proto5).toFixed(3)}`,
    );
  }
  await Promise.all([plain.release(), fused.release(), proto.release()]);
}

// 3. ORT profiler: kernel time by op type at 32×64.
{
  const dir = join(RESULTS, "profile");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const batch = benchIds(32, 64);
  const runs = args.quick ? 2 : 5;
  const profiled: [string, Uint8Array, RouteFeeds][] = [
    ["plain", graphs.plain, {}],
    ["fused5", graphs.fused, fusedFeeds.get(5)!],
    ["fused8", graphs.fused, fusedFeeds.get(8)!],
    ["proto5", graphs.proto, protoFeeds.get(5)!],
    ["proto8", graphs.proto, protoFeeds.get(8)!],
  ];
  const table = new Map<string, Map<string, number>>();
  for (const [name, graph, feeds] of profiled) {
    const s = await ort.InferenceSession.create(graph, options(join(dir, name)));
    for (let i = 0; i < 2; i++) await s.run(inputsOf(batch, feeds)); // warm-up, profiled too: dropped below
    for (let i = 0; i < runs; i++) await s.run(inputsOf(batch, feeds));
    s.endProfiling();
    await s.release();
    const file = readdirSync(dir).find((f) => f.startsWith(name) && f.endsWith(".json"))!;
    const events = JSON.parse(readFileSync(join(dir, file), "utf8")) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
    const runEvents = events.filter((e) => e.cat === "Session" && e.name === "model_run");
    const byOp = new Map<string, number>();
    // Node events of the timed runs only: skip the first two model_run windows.
    const startAfter = runEvents.length > 2 ? (runEvents[2] as unknown as { ts: number }).ts : 0;
    for (const e of events as unknown as { cat: string; name: string; dur: number; ts: number; args?: { op_name?: string } }[]) {
      if (e.cat !== "Node" || !e.name.endsWith("_kernel_time") || e.ts < startAfter) continue;
      const op = e.args?.op_name ?? "?";
      byOp.set(op, (byOp.get(op) ?? 0) + e.dur / 1000 / runs);
    }
    byOp.set("(model_run)", runEvents.slice(2).reduce((a, e) => a + e.dur / 1000, 0) / runs);
    table.set(name, byOp);
  }
  const ops = [...new Set([...table.values()].flatMap((m) => [...m.keys()]))].sort(
    (a, b) => (table.get("fused8")!.get(b) ?? 0) - (table.get("fused8")!.get(a) ?? 0),
  );
  console.log(`\nORT profile, 32×64, ms per run by op type (mean of ${runs}):`);
  console.log(`${"op".padEnd(26)}${[...table.keys()].map((k) => k.padStart(9)).join("")}`);
  for (const op of ops) console.log(`${op.padEnd(26)}${[...table.values()].map((m) => (m.get(op) ?? 0).toFixed(1).padStart(9)).join("")}`);
  const total = (m: Map<string, number>) => [...m].filter(([k]) => k !== "(model_run)").reduce((a, [, v]) => a + v, 0);
  console.log(`${"(sum of kernels)".padEnd(26)}${[...table.values()].map((m) => total(m).toFixed(1).padStart(9)).join("")}`);
}
