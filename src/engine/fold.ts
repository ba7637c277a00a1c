import ort from "onnxruntime-node";
import { FLOAT, OnnxGraph, type Dim } from "./onnx/graph.js";

/**
 * Folds a fusion into its adapters (docs/design.md §2, "Into the bottleneck") with ONNX Runtime's
 * matrix products rather than JavaScript loops: per layer, with U = [W_up ; b_up] stacking the
 * route's up-projections and their biases ([K + N, d]) and P = W_k·Uᵀ,
 *
 *   in_w  = [ W_down | W_qᵀ·P ]       [d, 2K + N]     (W_qᵀ·P = M·[W_upᵀ | b_upᵀ], M = W_qᵀ·W_k)
 *   in_b  = [ b_down | b_q·P ]        [1, 2K + N]     (b_q·P = m·[W_upᵀ | b_upᵀ])
 *   out_w = U·W_vᵀ                     [K + N, d]      (U itself for a static fusion)
 *
 * all layers in one run (a leading layer axis). Associating M·Uᵀ as W_qᵀ·(W_k·Uᵀ) costs 2·d²·(K+N)
 * per layer instead of d³ + d²·(K+N), and never forms M. The products run in float32 with the
 * session's own threads; a layout thread that runs below the engine's priority gives them only
 * the CPU that passes leave idle.
 */
export interface FoldInputs {
  /** [L, d, d], torch layout [out, in] */
  readonly queryWeight: Float32Array;
  /** [L, 1, d] */
  readonly queryBias: Float32Array;
  /** [L, d, d], torch layout */
  readonly keyWeight: Float32Array;
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

export class FusionFolder {
  private readonly sessions = new Map<"dynamic" | "static", Promise<ort.InferenceSession>>();

  /** `threads`: intra-op threads of the products; 0 lets ONNX Runtime choose (all cores). */
  constructor(private readonly threads = 0) {}

  async fold({ layers: L, hidden: d, bottleneck: K, adapters: N }: FoldShape, inputs: FoldInputs): Promise<FoldOutputs> {
    const kind = inputs.valueWeight ? "dynamic" : "static";
    const session = await this.session(kind);
    const tensor = (data: Float32Array, dims: number[]) => new ort.Tensor("float32", data, dims);
    const feeds: Record<string, ort.Tensor> = {
      query_w: tensor(inputs.queryWeight, [L, d, d]),
      query_b: tensor(inputs.queryBias, [L, 1, d]),
      key_w: tensor(inputs.keyWeight, [L, d, d]),
      down_w: tensor(inputs.downWeight, [L, d, K]),
      down_b: tensor(inputs.downBias, [L, 1, K]),
      up: tensor(inputs.up, [L, K + N, d]),
    };
    if (inputs.valueWeight) feeds.value_w = tensor(inputs.valueWeight, [L, d, d]);
    const out = await session.run(feeds);
    const result = (name: string) => out[name].data as Float32Array;
    return { inWeight: result("in_w"), inBias: result("in_b"), outWeight: inputs.valueWeight ? result("out_w") : inputs.up };
  }

  async close(): Promise<void> {
    for (const session of this.sessions.values()) await (await session).release();
    this.sessions.clear();
  }

  private session(kind: "dynamic" | "static"): Promise<ort.InferenceSession> {
    let session = this.sessions.get(kind);
    if (!session) {
      session = ort.InferenceSession.create(foldGraph(kind === "dynamic"), {
        executionProviders: ["cpu"],
        graphOptimizationLevel: "all",
        intraOpNumThreads: this.threads,
        interOpNumThreads: 1,
        executionMode: "sequential",
      });
      this.sessions.set(kind, session);
    }
    return session;
  }
}

function foldGraph(dynamic: boolean): Uint8Array {
  const g = new OnnxGraph();
  const input = (name: string, dims: Dim[]) => g.input(name, FLOAT, dims);
  const queryWeight = input("query_w", ["L", "d", "d"]);
  const queryBias = input("query_b", ["L", 1, "d"]);
  const keyWeight = input("key_w", ["L", "d", "d"]);
  const downWeight = input("down_w", ["L", "d", "K"]);
  const downBias = input("down_b", ["L", 1, "K"]);
  const up = input("up", ["L", "C", "d"]);
  const swapLast = { perm: [0, 2, 1] };
  const p = g.op("MatMul", [keyWeight, g.op("Transpose", [up], swapLast)]);
  g.node("Concat", [downWeight, g.op("MatMul", [g.op("Transpose", [queryWeight], swapLast), p])], { axis: 2 }, { outputs: ["in_w"] });
  g.node("Concat", [downBias, g.op("MatMul", [queryBias, p])], { axis: 2 }, { outputs: ["in_b"] });
  g.output("in_w", FLOAT, ["L", "d", "W"]);
  g.output("in_b", FLOAT, ["L", 1, "W"]);
  if (dynamic) {
    const valueWeight = input("value_w", ["L", "d", "d"]);
    g.node("MatMul", [up, g.op("Transpose", [valueWeight], swapLast)], {}, { outputs: ["out_w"] });
    g.output("out_w", FLOAT, ["L", "C", "d"]);
  }
  return g.toBytes("fold");
}
