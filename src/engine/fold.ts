import ort from "onnxruntime-node";
import type { Tensor } from "../formats/safetensors.js";
import { concat } from "./linalg.js";
import type { RunGuard } from "./thread/run-guard.js";
import { FLOAT, OnnxGraph, type Dim } from "./onnx/graph.js";

/**
 * The fusion's products, with ONNX Runtime's matrix products rather than JavaScript loops
 * (docs/design.md §2):
 *
 * - once per fusion, when it is read: its score matrix M = W_qᵀ·W_k [d, d] and bias m = b_q·W_k,
 *   d³ multiply-adds per layer (`scores`);
 * - once per route layout: the fusion folded into the route's adapters ("Into the bottleneck"),
 *   per layer, with U = [W_up ; b_up] stacking the route's up-projections and their biases
 *   ([K + N, d]),
 *
 *     in_w  = [ W_down | M·Uᵀ ]         [d, 2K + N]
 *     in_b  = [ b_down | m·Uᵀ ]         [1, 2K + N]
 *     out_w = U·W_vᵀ                     [K + N, d]      (U itself for a static fusion)
 *
 *   2·d²·(K + N) multiply-adds per layer (`fold`).
 *
 * All layers in one run (a leading layer axis), in float32, with the session's own threads; a
 * thread that runs below the engine's priority gives them only the CPU that passes leave idle.
 */
/** A fusion layer's query and key, torch layout [out, in]. */
export interface QueryKey {
  readonly queryWeight: Tensor; // [d, d]
  readonly queryBias: Tensor; // [d]
  readonly keyWeight: Tensor; // [d, d]
}

/** A fusion layer's score matrix: r = x·M + m, and adapter i's score is r·u_i (docs/design.md §2). */
export interface ScoreMatrix {
  readonly scoreWeight: Tensor; // M = W_qᵀ·W_k, [d, d]
  readonly scoreBias: Tensor; // m = b_q·W_k, [d]
}

export interface FoldInputs {
  /** M, [L, d, d] (`scores`) */
  readonly scoreWeight: Float32Array;
  /** m, [L, 1, d] */
  readonly scoreBias: Float32Array;
  /** [L, d, d], torch layout; null for a static fusion (the value is the identity). */
  readonly valueWeight: Float32Array | null;
  /** [L, d, K] */
  readonly downWeight: Float32Array;
  /** [L, 1, K] */
  readonly downBias: Float32Array;
  /** [L, K + N, d] */
  readonly up: Float32Array;
}

export interface FoldOutputs {
  /** [L, d, 2K + N] */
  readonly inWeight: Float32Array;
  /** [L, 1, 2K + N] */
  readonly inBias: Float32Array;
  /** [L, K + N, d] */
  readonly outWeight: Float32Array;
}

export interface FoldShape {
  readonly layers: number;
  readonly hidden: number;
  /** K: the route's bottleneck columns, all adapters together. */
  readonly bottleneck: number;
  /** N */
  readonly adapters: number;
}

type Products = "scores" | "dynamic" | "static";

export class FusionFolder {
  private readonly sessions = new Map<Products, Promise<ort.InferenceSession>>();

  /**
   * `threads`: intra-op threads of the products; 0 lets ONNX Runtime choose (all cores). `guard`:
   * for a worker its owner may terminate at any time (thread/run-guard.ts).
   */
  constructor(
    private readonly threads = 0,
    private readonly guard?: RunGuard,
  ) {}

  /** Every layer's score matrix, in one run. */
  async scores(d: number, layers: readonly QueryKey[]): Promise<ScoreMatrix[]> {
    const L = layers.length;
    const stack = (pick: (layer: QueryKey) => Tensor) => concat(layers.map((layer) => pick(layer).data));
    const out = await this.run("scores", {
      query_w: tensor(stack((f) => f.queryWeight), [L, d, d]),
      query_b: tensor(stack((f) => f.queryBias), [L, 1, d]),
      key_w: tensor(stack((f) => f.keyWeight), [L, d, d]),
    });
    const weight = out.score_w.data as Float32Array;
    const bias = out.score_b.data as Float32Array;
    return layers.map((_, l) => ({
      scoreWeight: { shape: [d, d], data: weight.subarray(l * d * d, (l + 1) * d * d) },
      scoreBias: { shape: [d], data: bias.subarray(l * d, (l + 1) * d) },
    }));
  }

  async fold({ layers: L, hidden: d, bottleneck: K, adapters: N }: FoldShape, inputs: FoldInputs): Promise<FoldOutputs> {
    const feeds: Record<string, ort.Tensor> = {
      score_w: tensor(inputs.scoreWeight, [L, d, d]),
      score_b: tensor(inputs.scoreBias, [L, 1, d]),
      down_w: tensor(inputs.downWeight, [L, d, K]),
      down_b: tensor(inputs.downBias, [L, 1, K]),
      up: tensor(inputs.up, [L, K + N, d]),
    };
    if (inputs.valueWeight) feeds.value_w = tensor(inputs.valueWeight, [L, d, d]);
    const out = await this.run(inputs.valueWeight ? "dynamic" : "static", feeds);
    const result = (name: string) => out[name].data as Float32Array;
    return { inWeight: result("in_w"), inBias: result("in_b"), outWeight: inputs.valueWeight ? result("out_w") : inputs.up };
  }

  async close(): Promise<void> {
    for (const session of this.sessions.values()) await (await session).release();
    this.sessions.clear();
  }

  private run(kind: Products, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
    const call = async () => (await this.session(kind)).run(feeds);
    return this.guard ? this.guard.run(call) : call();
  }

  private session(kind: Products): Promise<ort.InferenceSession> {
    let session = this.sessions.get(kind);
    if (!session) {
      session = ort.InferenceSession.create(kind === "scores" ? scoreGraph() : foldGraph(kind === "dynamic"), {
        executionProviders: ["cpu"],
        graphOptimizationLevel: "all",
        intraOpNumThreads: this.threads,
        interOpNumThreads: 1,
        executionMode: "sequential",
        // Products run now and then, each on large tensors: an arena would keep the largest run's
        // buffers for good, in every thread that folds or reads fusions.
        enableCpuMemArena: false,
      });
      this.sessions.set(kind, session);
    }
    return session;
  }
}

const tensor = (data: Float32Array, dims: number[]) => new ort.Tensor("float32", data, dims);
const swapLast = { perm: [0, 2, 1] };

let folder: FusionFolder | undefined;
/** Products for callers that bring no folder of their own (module reads, tools, tests), made on first use. */
export function folderOfThisThread(): FusionFolder {
  return (folder ??= new FusionFolder());
}

function scoreGraph(): Uint8Array {
  const g = new OnnxGraph();
  const queryWeight = g.input("query_w", FLOAT, ["L", "d", "d"]);
  const keyWeight = g.input("key_w", FLOAT, ["L", "d", "d"]);
  g.node("MatMul", [g.op("Transpose", [queryWeight], swapLast), keyWeight], {}, { outputs: ["score_w"] });
  g.node("MatMul", [g.input("query_b", FLOAT, ["L", 1, "d"]), keyWeight], {}, { outputs: ["score_b"] });
  g.output("score_w", FLOAT, ["L", "d", "d"]);
  g.output("score_b", FLOAT, ["L", 1, "d"]);
  return g.toBytes("scores");
}

function foldGraph(dynamic: boolean): Uint8Array {
  const g = new OnnxGraph();
  const input = (name: string, dims: Dim[]) => g.input(name, FLOAT, dims);
  const scoreWeight = input("score_w", ["L", "d", "d"]);
  const scoreBias = input("score_b", ["L", 1, "d"]);
  const downWeight = input("down_w", ["L", "d", "K"]);
  const downBias = input("down_b", ["L", 1, "K"]);
  const up = input("up", ["L", "C", "d"]);
  const upT = g.op("Transpose", [up], swapLast);
  g.node("Concat", [downWeight, g.op("MatMul", [scoreWeight, upT])], { axis: 2 }, { outputs: ["in_w"] });
  g.node("Concat", [downBias, g.op("MatMul", [scoreBias, upT])], { axis: 2 }, { outputs: ["in_b"] });
  g.output("in_w", FLOAT, ["L", "d", "W"]);
  g.output("in_b", FLOAT, ["L", 1, "W"]);
  if (dynamic) {
    const valueWeight = input("value_w", ["L", "d", "d"]);
    g.node("MatMul", [up, g.op("Transpose", [valueWeight], swapLast)], {}, { outputs: ["out_w"] });
    g.output("out_w", FLOAT, ["L", "C", "d"]);
  }
  return g.toBytes("fold");
}
