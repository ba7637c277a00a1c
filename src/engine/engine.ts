import ort from "onnxruntime-node";
import { ModelLoadError, UnavailableError } from "../errors.js";
import type { Backbone, BackboneConfig } from "./backbone.js";
import { buildBertGraph, GRAPH_OUTPUTS, POSITION_IDS, SLOT_ORDER, SLOT_TOKENS, SLOT_UNORDER, slotInput, slotProbs, type GraphVariant } from "./bert-graph.js";
import { resolveInt8Mode, type Int8Mode, type Int8WeightChoice } from "./int8-mode.js";
import { backboneFeeds, directFeeds, neutralFusion, quantizeRouteFeeds, type NeutralFusion, type RouteFeeds } from "./layout.js";
import { attentionMask, positionIds, segmentsOf, type TokenBatch } from "./packing.js";
import type { Precision } from "./products.js";
import type { RouteModules } from "./weights.js";

export type Device = "cpu" | "cuda";

export interface EngineOptions {
  readonly device: Device;
  /** Intra-op threads; 0 lets ONNX Runtime choose (all cores). */
  readonly threads: number;
  readonly variant: GraphVariant;
  /** Arithmetic of the backbone and fusion matrix products (see products.ts); float32 unless asked. */
  readonly precision?: Precision;
  /** Range of the int8 weights (int8-mode.ts); auto unless asked. */
  readonly int8Weights?: Int8WeightChoice;
  /** Routes one forward pass can serve (fused variant); 1 unless asked. */
  readonly slots?: number;
  /** Routes one pass can serve from their modules unfolded (fused variant; bert-graph.ts, directTail); 0 unless asked. */
  readonly directSlots?: number;
  /** Rows may hold several inputs (packing.ts); false unless asked. */
  readonly packed?: boolean;
}

export interface FusionProbs {
  /** [layers, adapters, columns]: one column per token */
  readonly data: Float32Array;
  readonly adapters: number;
  readonly columns: number;
  /** The column of each input's first token, in input order (the inputs of its slot). */
  readonly starts: readonly number[];
}

export interface ForwardResult {
  /** [batch, seqLen, hidden] */
  readonly hidden: Float32Array;
  /** Absent for the plain variant. */
  readonly fusionProbs?: FusionProbs;
}

/** One route's share of a pass: its weights, and how many consecutive inputs of the batch are its own. */
export interface SlotFeeds {
  readonly feeds: RouteFeeds;
  readonly inputs: number;
  /** The feeds are directFeeds (a direct slot), not the route's folded layout. */
  readonly direct?: boolean;
}

export interface PassResult {
  /** [batch, seqLen, hidden] */
  readonly hidden: Float32Array;
  /** Per slot, over that slot's tokens only. */
  readonly fusionProbs: readonly FusionProbs[];
}

/**
 * One ONNX Runtime session holding the frozen backbone. Every route runs through it; a route
 * only brings its own weights as inputs. Runs are serialized: on a CPU the intra-op threads
 * already use every core, and overlapping runs would only compete for them.
 *
 * This is the engine within one thread; the server runs it in a worker of its own
 * (engine-thread.ts), and tests and benchmarks use it directly.
 */
export class FusionEngine {
  private tail: Promise<unknown> = Promise.resolve();
  /** A route's feeds in the graph's precision, kept as long as the route's own feeds live. */
  private readonly quantizedFeeds = new WeakMap<RouteFeeds, RouteFeeds>();
  /** What an unused slot is fed: the all-zero adapter, on no tokens. */
  private readonly idleSlot: RouteFeeds;
  private readonly neutral: NeutralFusion;
  private readonly idleDirectSlot: RouteFeeds;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly config: BackboneConfig,
    readonly options: EngineOptions,
    /** The int8 weight range chosen at start; absent for float32. */
    readonly int8: Int8Mode | undefined,
    idleSlot: RouteFeeds,
    /** Bytes of the graph the session was built from: the backbone's weights, nearly all of it. */
    readonly graphBytes: number,
  ) {
    this.idleSlot = this.forPrecision(idleSlot);
    this.neutral = neutralFusion(config.hiddenSize);
    this.idleDirectSlot = this.directFeeds({ adapters: [], fusion: null });
  }

  /** Folded route slots of a pass. */
  get slots(): number {
    return this.options.slots ?? 1;
  }

  /** Direct route slots of a pass. */
  get directSlots(): number {
    return this.options.directSlots ?? 0;
  }

  /** A route's feeds for a direct slot: its modules side by side, nothing folded (layout.ts). */
  directFeeds(modules: RouteModules): RouteFeeds {
    return directFeeds(this.config, modules, this.neutral);
  }

  static async create(backbone: Backbone, options: EngineOptions): Promise<FusionEngine> {
    const int8 = options.precision === "int8" ? await resolveInt8Mode(options.int8Weights) : undefined;
    const model = buildBertGraph(backbone, options.variant, int8 ?? "float32", options.slots ?? 1, options.packed ?? false, options.directSlots ?? 0);
    try {
      const session = await ort.InferenceSession.create(model, sessionOptions(options));
      return new FusionEngine(session, backbone.config, options, int8, await backboneFeeds(backbone.config), model.byteLength);
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

  /** Every row of the batch through one route. */
  async run(batch: TokenBatch, feeds: RouteFeeds): Promise<ForwardResult> {
    const { hidden, fusionProbs } = await this.runPass(batch, [{ feeds, inputs: batch.lengths.length }]);
    return { hidden, fusionProbs: fusionProbs[0] };
  }

  /** Inputs of several routes in one pass, ordered by slot; at most `slots` folded and `directSlots` direct routes. */
  runPass(batch: TokenBatch, slots: readonly SlotFeeds[]): Promise<PassResult> {
    const result = this.tail.then(() => this.forward(batch, slots));
    this.tail = result.catch(() => undefined);
    return result;
  }

  async close(): Promise<void> {
    await this.tail;
    await this.session.release();
  }

  private async forward(batch: TokenBatch, slots: readonly SlotFeeds[]): Promise<PassResult> {
    const direct = slots.filter((s) => s.direct).length;
    if (slots.length - direct > this.slots || direct > this.directSlots || slots.reduce((sum, s) => sum + s.inputs, 0) !== batch.lengths.length) {
      throw new Error(`a pass takes up to ${this.slots} folded and ${this.directSlots} direct route slots covering its ${batch.lengths.length} inputs`);
    }
    // Graph slot of each of the pass's slots: folded ones from 0, direct ones from `slots`.
    let nextFolded = 0;
    let nextDirect = this.slots;
    const graphSlot = slots.map((s) => (s.direct ? nextDirect++ : nextFolded++));
    const graphSlots = this.slots + this.directSlots;
    if (batch.segments && !this.options.packed) throw new Error("a packed batch needs an engine created with `packed`");
    const shape = [batch.rows, batch.seqLen];
    const inputs: Record<string, ort.Tensor> = { input_ids: new ort.Tensor("int64", batch.ids, shape) };
    if (this.options.packed) {
      inputs.attention_mask = new ort.Tensor("int64", attentionMask(batch), [...shape, batch.seqLen]);
      inputs[POSITION_IDS] = new ort.Tensor("int64", positionIds(batch, this.config), shape);
    } else {
      inputs.attention_mask = new ort.Tensor("int64", batch.mask, shape);
    }
    let out: ort.InferenceSession.ReturnType;
    try {
      if (this.options.variant !== "plain") {
        const fed: RouteFeeds[] = Array.from({ length: graphSlots }, (_, s) => (s < this.slots ? this.idleSlot : this.idleDirectSlot));
        slots.forEach((slot, i) => (fed[graphSlot[i]] = slot.direct ? slot.feeds : this.forPrecision(slot.feeds)));
        fed.forEach((feeds, s) => {
          for (const [name, f] of Object.entries(feeds)) inputs[slotInput(name, s)] = new ort.Tensor(f.type, f.data, f.dims);
        });
      }
      if (graphSlots > 1) {
        const { order, tokens, unorder } = slotTokens(batch, slots, graphSlot, graphSlots);
        inputs[SLOT_ORDER] = new ort.Tensor("int64", order, [order.length]);
        inputs[SLOT_TOKENS] = new ort.Tensor("int64", tokens, [graphSlots]);
        inputs[SLOT_UNORDER] = new ort.Tensor("int64", unorder, [unorder.length]);
      }
      out = await this.session.run(inputs);
    } catch (err) {
      throw new UnavailableError("inference_failed", `the forward pass failed: ${String(err)}`);
    }
    const segments = segmentsOf(batch);
    let first = 0;
    const fusionProbs = slots.flatMap((slot, s) => {
      const own = segments.slice(first, (first += slot.inputs));
      const probs = out[slotProbs(graphSlot[s])];
      if (!probs) return [];
      // Several slots: a slot's columns are its inputs' tokens one input after another (slotTokens);
      // one slot: every token of the batch, row by row.
      let column = 0;
      const starts = own.map(({ row, offset, length }) => (graphSlots > 1 ? (column += length) - length : row * batch.seqLen + offset));
      return [{ data: probs.data as Float32Array, adapters: probs.dims[1], columns: probs.dims[2], starts }];
    });
    return { hidden: out[GRAPH_OUTPUTS.hidden].data as Float32Array, fusionProbs };
  }

  /** Feeds laid out in float32 are quantized here, once, for an int8 engine; see quantizeRouteFeeds. */
  private forPrecision(feeds: RouteFeeds): RouteFeeds {
    if (!this.int8 || Object.values(feeds).some((f) => f.type === "int8")) return feeds;
    let ready = this.quantizedFeeds.get(feeds);
    if (!ready) {
      ready = quantizeRouteFeeds(feeds, this.config.numLayers, this.int8.weightMax);
      this.quantizedFeeds.set(feeds, ready);
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

/**
 * The batch's flat token indices graph slot by graph slot: each slot's inputs (consecutive in input
 * order) one after another, token by token; the tokens of no input (padding) go to graph slot 0,
 * after its own, where they are computed and never read: a folded slot's fusion costs a padding
 * token less than a direct slot's. `graphSlot[i]`: the graph slot of the pass's slot i.
 */
function slotTokens(batch: TokenBatch, slots: readonly SlotFeeds[], graphSlot: readonly number[], slotCount: number) {
  const T = batch.seqLen;
  const segments = segmentsOf(batch);
  const taken = new Uint8Array(batch.rows * T);
  for (const { row, offset, length } of segments) taken.fill(1, row * T + offset, row * T + offset + length);
  const order = new BigInt64Array(batch.rows * T);
  const tokens = new BigInt64Array(slotCount);
  const firstInput: number[] = [];
  slots.reduce((first, slot, i) => ((firstInput[i] = first), first + slot.inputs), 0);
  const bySlot = new Map(graphSlot.map((g, i) => [g, i]));
  let next = 0;
  for (let g = 0; g < slotCount; g++) {
    const start = next;
    const i = bySlot.get(g);
    if (i !== undefined) {
      for (const { row, offset, length } of segments.slice(firstInput[i], firstInput[i] + slots[i].inputs)) {
        for (let t = row * T + offset; t < row * T + offset + length; t++) order[next++] = BigInt(t);
      }
    }
    if (g === 0) for (let t = 0; t < taken.length; t++) if (!taken[t]) order[next++] = BigInt(t);
    tokens[g] = BigInt(next - start);
  }
  const unorder = new BigInt64Array(order.length);
  order.forEach((t, i) => (unorder[Number(t)] = BigInt(i)));
  return { order, tokens, unorder };
}
