import { join } from "node:path";
import { loadBackbone, type Backbone } from "../src/engine/backbone.js";
import { FusionEngine } from "../src/engine/engine.js";
import type { TokenBatch } from "../src/engine/packing.js";
import { routeFeeds, type RouteFeeds } from "../src/engine/layout.js";
import { readout } from "../src/engine/readout.js";
import type { GraphVariant } from "../src/engine/bert-graph.js";
import type { Int8Mode } from "../src/engine/int8-mode.js";
import type { Precision } from "../src/engine/products.js";
import { loadAdapter, loadFusion, type AdapterModule } from "../src/library/adapterhub.js";
import { assembleRoute, type FusionRoute } from "../src/library/route.js";
import { benchIds } from "./inputs.js";
import { timeInBlocks, type Guard, type RepeatPolicy } from "./stats.js";

export const FUSION_SIZES = [1, 2, 5, 8] as const;
export const MAIN_N = 5;

/**
 * The engine-level cases, timed round-robin per shape. `_int8` cases run the same weights with
 * --precision int8 (the literal graph has no int8 form).
 */
export const ENGINE_CASES = ["plain", "fused1", "fused2", "fused5", "fused8", "literal5", "plain_int8", "fused2_int8", "fused5_int8", "fused8_int8"] as const;
export type EngineCase = (typeof ENGINE_CASES)[number];

export interface EngineResults {
  readonly threads: number;
  readonly shapes: readonly string[];
  /** case -> shape "BxT" -> run times in ms */
  readonly times: Record<EngineCase, Record<string, number[]>>;
  /** case -> shape -> CPU (% of a core) other processes used while it was measured, after retries */
  readonly othersPercent: Record<EngineCase, Record<string, number>>;
  readonly loadSeconds: number;
  /** The weight range the int8 cases ran with, as the engine chose it on this CPU. */
  readonly int8: Int8Mode;
}

/** A route with the engine's feeds for it, laid out for one graph variant. */
export type BenchRoute = FusionRoute & { readonly feeds: RouteFeeds };

/** The bench library's fusions (N = 1, 2, 5, 8) as routes for one graph variant. */
export async function loadRoutes(backbone: Backbone, weightsDir: string, variant: "fused" | "literal"): Promise<Map<number, BenchRoute>> {
  const adapters = new Map<string, AdapterModule>();
  const routes = new Map<number, BenchRoute>();
  for (const n of FUSION_SIZES) {
    const fusion = await loadFusion(join(weightsDir, "fusions", `fuse${n}`, "1"), backbone.config);
    const members: AdapterModule[] = [];
    for (const name of fusion.adapters) {
      if (!adapters.has(name)) adapters.set(name, await loadAdapter(join(weightsDir, "adapters", name, "1"), backbone.config));
      members.push(adapters.get(name)!);
    }
    const route = assembleRoute(`fuse${n}`, members, fusion, fusion.head);
    routes.set(n, { ...route, feeds: await routeFeeds(backbone.config, route, variant) });
  }
  return routes;
}

export interface Engines {
  readonly backbone: Backbone;
  readonly plain: FusionEngine;
  readonly fused: FusionEngine;
  readonly literal: FusionEngine;
  readonly plainInt8: FusionEngine;
  readonly fusedInt8: FusionEngine;
  readonly fusedRoutes: Map<number, BenchRoute>;
  readonly literalRoutes: Map<number, BenchRoute>;
  close(): Promise<void>;
}

export async function openEngines(backboneDir: string, weightsDir: string, threads: number): Promise<Engines> {
  const backbone = await loadBackbone(backboneDir);
  const create = (variant: GraphVariant, precision: Precision = "float32") => FusionEngine.create(backbone, { device: "cpu", threads, variant, precision });
  const [plain, fused, literal] = [await create("plain"), await create("fused"), await create("literal")];
  const [plainInt8, fusedInt8] = [await create("plain", "int8"), await create("fused", "int8")];
  const fusedRoutes = await loadRoutes(backbone, weightsDir, "fused");
  const literalRoutes = await loadRoutes(backbone, weightsDir, "literal");
  return {
    backbone,
    plain,
    fused,
    literal,
    plainInt8,
    fusedInt8,
    fusedRoutes,
    literalRoutes,
    close: async () => {
      await Promise.all([plain, fused, literal, plainInt8, fusedInt8].map((e) => e.close()));
    },
  };
}

function runner(engines: Engines, c: EngineCase, batch: TokenBatch): () => Promise<unknown> {
  if (c === "plain") return () => engines.plain.run(batch, {});
  if (c === "plain_int8") return () => engines.plainInt8.run(batch, {});
  if (c === "literal5") {
    const feeds: RouteFeeds = engines.literalRoutes.get(MAIN_N)!.feeds;
    return () => engines.literal.run(batch, feeds);
  }
  const [name, precision] = c.split("_");
  const feeds = engines.fusedRoutes.get(Number(name.slice("fused".length)))!.feeds;
  const engine = precision === "int8" ? engines.fusedInt8 : engines.fused;
  return () => engine.run(batch, feeds);
}

export async function runEngineBench(
  engines: Engines,
  shapes: readonly string[],
  policy: RepeatPolicy,
  guard: Guard,
  log: (line: string) => void,
): Promise<Omit<EngineResults, "loadSeconds" | "threads">> {
  const times = Object.fromEntries(ENGINE_CASES.map((c) => [c, {}])) as Record<EngineCase, Record<string, number[]>>;
  const othersPercent = Object.fromEntries(ENGINE_CASES.map((c) => [c, {}])) as Record<EngineCase, Record<string, number>>;
  for (const shape of shapes) {
    const [b, t] = shape.split("x").map(Number);
    const batch = benchIds(b, t);
    const runs = await timeInBlocks(
      ENGINE_CASES.map((c) => ({ label: `${c} ${shape}`, run: runner(engines, c, batch) })),
      policy,
      guard,
    );
    ENGINE_CASES.forEach((c, i) => {
      times[c][shape] = runs.times[i];
      othersPercent[c][shape] = runs.othersPercent[i];
    });
    const med = (c: EngineCase) => [...times[c][shape]].sort((x, y) => x - y)[Math.floor(times[c][shape].length / 2)].toFixed(1);
    log(`engine ${shape}: ${ENGINE_CASES.map((c) => `${c} ${med(c)} ms`).join(", ")} (${runs.times[0].length} runs each)`);
  }
  return { shapes, times, othersPercent, int8: engines.fusedInt8.int8! };
}

/** Fused N=5 on the parity input, for comparison with the reference's own output on the same weights. */
export async function parityAgainst(
  engines: Engines,
  ref: { batch: number; seq: number; hidden: number[]; logits: number[] },
): Promise<{ hidden: number; logits: number }> {
  const route = engines.fusedRoutes.get(MAIN_N)!;
  const batch = benchIds(ref.batch, ref.seq);
  const result = await engines.fused.run(batch, route.feeds);
  let hidden = 0;
  result.hidden.forEach((v, i) => (hidden = Math.max(hidden, Math.abs(v - ref.hidden[i]))));
  const d = engines.backbone.config.hiddenSize;
  const outs = readout(route.head, result, batch, d, false);
  const C = route.head.labels.length;
  let logits = 0;
  outs.forEach((o, b) => {
    const l = (o.output as { logits: Float32Array | number[] }).logits;
    for (let c = 0; c < C; c++) logits = Math.max(logits, Math.abs(l[c] - ref.logits[b * C + c]));
  });
  return { hidden, logits };
}
