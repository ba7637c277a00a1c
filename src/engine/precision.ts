import { performance } from "node:perf_hooks";
import type { Backbone } from "./backbone.js";
import { FusionEngine, type Device } from "./engine.js";
import type { Int8WeightChoice } from "./int8-mode.js";
import { backboneFeeds } from "./layout.js";
import { packBatch, type TokenBatch } from "./packing.js";
import type { Precision, PrecisionChoice } from "./products.js";

export interface ResolvedPrecision {
  readonly precision: Precision;
  /** Why: the choice as asked, or what the probe measured. */
  readonly reason: string;
  /** `auto` on the CPU: int8's fastest pass time over float32's, per probed shape. */
  readonly ratios?: readonly { readonly inputs: number; readonly ratio: number }[];
}

export interface ProbeOptions {
  readonly device: Device;
  readonly threads: number;
  readonly int8Weights: Int8WeightChoice;
  /** The served engine's route slots: the probe times the graph the server will run. */
  readonly slots: number;
  /** Inputs of the probe's full pass: the server's --max-batch-size. */
  readonly batchInputs: number;
}

/** A tweet's typical length in tokens, special tokens included. */
const PROBE_TOKENS = 24;
/** Timed pairs per shape, after a warm-up pair. */
const PAIRS = { single: 9, full: 3 };

/**
 * Resolves `auto`: int8 only where it is faster, measured, not assumed. Whether ONNX Runtime's
 * int8 kernels beat its float32 ones depends on the CPU's integer instructions and on more than
 * their presence (an AVX-512 VNNI CPU has measured int8 slower), and the int8 graph also pays for
 * quantizing every activation per token, which dominates a pass over one input. So both graphs are
 * built and timed, alternately, over one input and over a full pass, and int8 is chosen only if it
 * is no slower at either. Each graph's fastest pass counts, not a typical one: other work on the
 * CPU slows the two graphs unequally (float32's well-parallelized products lose more to a busy
 * core than int8's many small operators), and the fastest pass is the one least disturbed. A few
 * seconds at start on a 2-core CPU; the CPU only, as int8 is.
 */
export async function resolvePrecision(choice: PrecisionChoice, loadBackbone: () => Promise<Backbone>, options: ProbeOptions): Promise<ResolvedPrecision> {
  if (choice !== "auto") return { precision: choice, reason: `--precision ${choice}` };
  if (options.device !== "cpu") return { precision: "float32", reason: "auto: int8 runs on the CPU only" };
  const backbone = await loadBackbone();
  const engines = new Map<Precision, FusionEngine>();
  try {
    for (const precision of ["float32", "int8"] as const) {
      engines.set(precision, await FusionEngine.create(backbone, { ...options, variant: "fused", packed: true, precision }));
    }
    const feeds = await backboneFeeds(backbone.config);
    const tokens = (i: number) => Array.from({ length: PROBE_TOKENS }, (_, t) => (i * 7919 + t * 104729) % backbone.config.vocabSize);
    const shapes: [number, TokenBatch, number][] = [
      [1, packBatch([tokens(0)]), PAIRS.single],
      [options.batchInputs, packBatch(Array.from({ length: options.batchInputs }, (_, i) => tokens(i))), PAIRS.full],
    ];
    const ratios: { inputs: number; ratio: number }[] = [];
    for (const [inputs, batch, pairs] of shapes) {
      const times = new Map<Precision, number[]>([["float32", []], ["int8", []]]);
      for (let pair = 0; pair <= pairs; pair++) {
        for (const [precision, engine] of engines) {
          const started = performance.now();
          await engine.run(batch, feeds);
          if (pair > 0) times.get(precision)!.push(performance.now() - started);
        }
      }
      const [float32, int8] = [Math.min(...times.get("float32")!), Math.min(...times.get("int8")!)];
      ratios.push({ inputs, ratio: int8 / float32 });
    }
    const measured = `int8 pass time / float32 on this CPU: ${ratios.map((r) => `${r.inputs} input${r.inputs > 1 ? "s" : ""} ${r.ratio.toFixed(2)}×`).join(", ")}`;
    return ratios.every((r) => r.ratio <= 1)
      ? { precision: "int8", reason: `auto: ${measured}`, ratios }
      : { precision: "float32", reason: `auto: int8 is slower here (${measured})`, ratios };
  } finally {
    for (const engine of engines.values()) await engine.close();
  }
}
