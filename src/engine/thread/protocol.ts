import { type ErrorKind, ModelLoadError, type ModelLoadErrorCode, ServingError } from "../../errors.js";
import type { BackboneConfig } from "../backbone.js";
import type { Device } from "../engine.js";
import type { Segment } from "../packing.js";
import type { PredictionHead } from "../heads.js";
import type { Int8Mode, Int8WeightChoice } from "../int8-mode.js";
import type { RouteFeeds } from "../layout.js";
import type { Precision } from "../products.js";
import type { InputReadout } from "../readout.js";
import type { AdapterWeights, FusionWeights, RouteModules } from "../weights.js";

/**
 * Messages between the main thread and the engine's two workers (docs/design.md, "Threads"):
 * the engine worker owns the ONNX Runtime session and runs passes; the layout worker turns a
 * route's modules into the engine's feeds. Feeds travel as transferred buffers, never copied.
 */

export interface EngineWorkerSetup {
  readonly backboneDir: string;
  readonly device: Device;
  readonly precision: Precision;
  /** Range of the int8 weights (int8-mode.ts); auto unless asked. */
  readonly int8Weights?: Int8WeightChoice;
  /** Intra-op threads of the forward pass; 0 lets ONNX Runtime choose. */
  readonly threads: number;
  /** Routes one pass can serve from their folded layouts. */
  readonly slots: number;
  /** Routes one pass can serve from their modules unfolded (bert-graph.ts, directTail). */
  readonly directSlots: number;
}

export interface LayoutWorkerSetup {
  /** Which layouts the thread builds, which sets its priority (priority.ts, LAYOUT_NICE). */
  readonly role: "traffic" | "changes";
  readonly backbone: BackboneConfig;
  /** The engine's int8 weight range; absent for float32. */
  readonly int8: Int8Mode | undefined;
  /** Intra-op threads of the fold's products, as many as the engine's; 0 lets ONNX Runtime choose. */
  readonly threads: number;
  readonly hold?: Int32Array;
}

export type ToEngine =
  | { readonly type: "install"; readonly route: number; readonly feeds: RouteFeeds; readonly head: PredictionHead }
  /** A route for direct slots: the engine thread sets its modules (in shared memory) side by side itself. */
  | { readonly type: "install_direct"; readonly route: number; readonly modules: RouteModules; readonly head: PredictionHead }
  | { readonly type: "release"; readonly route: number }
  | { readonly type: "run"; readonly pass: number; readonly batch: WireBatch; readonly slots: readonly WireSlot[] };

export type FromEngine =
  | { readonly type: "ready"; readonly backbone: BackboneConfig; readonly int8: Int8Mode | undefined; readonly backboneBytes: number }
  | { readonly type: "failed"; readonly error: WireError }
  | { readonly type: "done"; readonly pass: number; readonly outputs: InputReadout[]; readonly seconds: number }
  | { readonly type: "pass_failed"; readonly pass: number; readonly error: WireError };

export type ToLayout = LayoutJob | { readonly type: "close" };

export interface LayoutJob {
  readonly type: "layout";
  readonly job: number;
  readonly adapters: readonly AdapterWeights[];
  readonly fusion: FusionWeights | null;
}

export type FromLayout =
  | { readonly job: number; readonly feeds: RouteFeeds; readonly seconds: number }
  | { readonly job: number; readonly error: WireError };

export interface WireBatch {
  readonly seqLen: number;
  readonly ids: BigInt64Array;
  readonly mask: BigInt64Array;
  readonly lengths: readonly number[];
  readonly segments: readonly Segment[] | undefined;
}

export interface WireSlot {
  readonly route: number;
  readonly inputs: number;
  readonly explain: boolean;
}

/** An error as it crosses a thread: a ServingError keeps its kind, code and retry hint. */
export interface WireError {
  readonly kind?: ErrorKind;
  readonly code?: string;
  readonly message: string;
  readonly retryAfterSeconds?: number;
}

export function toWire(err: unknown): WireError {
  if (err instanceof ServingError) return { kind: err.kind, code: err.code, message: err.message, retryAfterSeconds: err.retryAfterSeconds };
  return { message: err instanceof Error ? err.message : String(err) };
}

/** The error as the thread that raised it would have thrown it. */
export function fromWire(wire: WireError): Error {
  if (!wire.kind || !wire.code) return new Error(wire.message);
  if (wire.kind === "unloadable_model") return new ModelLoadError(wire.code as ModelLoadErrorCode, wire.message);
  return new ServingError(wire.kind, wire.code, wire.message, wire.retryAfterSeconds);
}
