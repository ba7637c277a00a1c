import ort from "onnxruntime-node";
import { ModelLoadError, UnavailableError } from "../errors.js";
import type { Backbone, BackboneConfig } from "./backbone.js";
import { buildBertGraph, GRAPH_OUTPUTS, routeInputs, type GraphVariant } from "./bert-graph.js";
import { scaleInput, type Precision } from "./products.js";
import { quantizePerColumn } from "./quantize.js";

export type Device = "cpu" | "cuda";

export interface EngineOptions {
  readonly device: Device;
  /** Intra-op threads; 0 lets ONNX Runtime choose (all cores). */
  readonly threads: number;
  readonly variant: GraphVariant;
  /** Arithmetic of the backbone and fusion matrix products (see products.ts); float32 unless asked. */
  readonly precision?: Precision;
}

/** A padded batch of token ids, row-major [batch, seqLen]. */
export interface TokenBatch {
  readonly batch: number;
  readonly seqLen: number;
  readonly ids: BigInt64Array;
  readonly mask: BigInt64Array;
  /** Real (unpadded) length of each row. */
  readonly lengths: readonly number[];
}

/** Graph inputs that carry one route's adapter and fusion weights. */
export type RouteFeeds = Readonly<Record<string, ort.Tensor>>;

export interface ForwardResult {
  /** [batch, seqLen, hidden] */
  readonly hidden: Float32Array;
  /** [layers, adapters, batch·seqLen], absent for the plain variant. */
  readonly fusionProbs?: { readonly data: Float32Array; readonly adapters: number };
}

/**
 * One ONNX Runtime session holding the frozen backbone. Every route runs through it; a route
 * only brings its own weights as inputs. Runs are serialized: on a CPU the intra-op threads
 * already use every core, and overlapping runs would only compete for them.
 */
export class FusionEngine {
  private tail: Promise<unknown> = Promise.resolve();
  /** A route's feeds in the graph's precision, kept as long as the route's own feeds live. */
  private readonly prepared = new WeakMap<RouteFeeds, RouteFeeds>();

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly config: BackboneConfig,
    readonly options: EngineOptions,
  ) {}

  static async create(backbone: Backbone, options: EngineOptions): Promise<FusionEngine> {
    const model = buildBertGraph(backbone, options.variant, options.precision ?? "float32");
    try {
      const session = await ort.InferenceSession.create(model, sessionOptions(options));
      return new FusionEngine(session, backbone.config, options);
    } catch (err) {
      if (options.device === "cuda") {
        throw new ModelLoadError(
          "unsupported_config",
          `device 'cuda' is not available: ONNX Runtime's CUDA execution provider could not be loaded (${String(err)}). ` +
            "Install onnxruntime-node with its CUDA binaries (ONNXRUNTIME_NODE_INSTALL=cuda12) or use --device cpu.",
        );
      }
      throw err;
    }
  }

  run(batch: TokenBatch, feeds: RouteFeeds): Promise<ForwardResult> {
    const result = this.tail.then(() => this.forward(batch, feeds));
    this.tail = result.catch(() => undefined);
    return result;
  }

  async close(): Promise<void> {
    await this.tail;
    await this.session.release();
  }

  private async forward(batch: TokenBatch, feeds: RouteFeeds): Promise<ForwardResult> {
    const shape = [batch.batch, batch.seqLen];
    const inputs: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", batch.ids, shape),
      attention_mask: new ort.Tensor("int64", batch.mask, shape),
    };
    let out: ort.InferenceSession.ReturnType;
    try {
      if (this.options.variant !== "plain") Object.assign(inputs, this.prepare(feeds));
      out = await this.session.run(inputs);
    } catch (err) {
      throw new UnavailableError("inference_failed", `the forward pass failed: ${String(err)}`);
    }
    const probs = out[GRAPH_OUTPUTS.fusionProbs];
    return {
      hidden: out[GRAPH_OUTPUTS.hidden].data as Float32Array,
      fusionProbs: probs ? { data: probs.data as Float32Array, adapters: probs.dims[1] } : undefined,
    };
  }

  /** Routes are assembled in float32, whatever the engine's precision; see quantizeRouteFeeds. */
  private prepare(feeds: RouteFeeds): RouteFeeds {
    if (this.options.precision !== "int8") return feeds;
    let ready = this.prepared.get(feeds);
    if (!ready) {
      ready = quantizeRouteFeeds(feeds, this.config.numLayers);
      this.prepared.set(feeds, ready);
    }
    return ready;
  }
}

/** How every engine session is created (bench/profile.ts profiles the same). */
export function sessionOptions(options: EngineOptions): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [options.device],
    graphOptimizationLevel: "all",
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    // The graph writes residual LayerNorms unfused (bert-graph.ts, residualNorm); this fusion
    // would turn them back into the slower SkipLayerNormalization wherever it can prove the shapes.
    extra: { optimization: { disable_specified_optimizers: "SkipLayerNormFusion" } },
  };
}

/** The feeds an int8 fused graph takes: each layer's two fusion matrices quantized per column. */
export function quantizeRouteFeeds(feeds: RouteFeeds, numLayers: number): RouteFeeds {
  const quantized: Record<string, ort.Tensor> = { ...feeds };
  for (let l = 0; l < numLayers; l++) {
    const names = routeInputs(l);
    for (const name of [names.inWeight, names.outWeight]) {
      const { dims, data } = feeds[name];
      const { values, scales } = quantizePerColumn({ shape: dims, data: data as Float32Array });
      quantized[name] = new ort.Tensor("int8", values, dims);
      quantized[scaleInput(name)] = new ort.Tensor("float32", scales, [scales.length]);
    }
  }
  return quantized;
}
