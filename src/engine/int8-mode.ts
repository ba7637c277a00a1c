import ort from "onnxruntime-node";
import { FLOAT, INT8, OnnxGraph, UINT8 } from "./onnx/graph.js";

/**
 * The range of the int8 weights, and why it depends on the CPU.
 *
 * ONNX Runtime multiplies the u8 activations (zero point 128, so up to 255) by the s8 weights. On
 * x86 CPUs without VNNI or AMX (AVX2, and AVX-512 before Cascade Lake) its kernel uses vpmaddubsw,
 * which adds each two neighbouring u8·s8 products into one int16 and saturates: 2 · 255 · 127 =
 * 64 770 does not fit, and a pair that large is silently clipped to 32 767. Weights within ±63
 * keep every pair inside int16 (2 · 255 · 63 = 32 130) for one bit of weight resolution. VNNI
 * (vpdpbusd) and AMX sum in int32 and keep the full ±127. SSE-only and ARM kernels widen first and
 * never saturate.
 *
 * Which kernel a build of ONNX Runtime picks on a CPU is decided from CPUID deep inside it, so the
 * engine asks the kernel itself: a small model multiplies values that saturate if anything does
 * (255 by ±127, in the same operator and with the same kinds of weight as the engine's graph) and
 * the answer is compared with the exact one.
 */

/** `auto`: 8-bit weights where the probe finds the products exact, 7-bit elsewhere; `8`, `7`: forced. */
export type Int8WeightChoice = "auto" | "8" | "7";

export interface Int8Mode {
  readonly weightBits: 8 | 7;
  /** Largest |q| of a quantized weight: 127 or 63. */
  readonly weightMax: number;
  /** The probe's answer: whether this CPU's products of 8-bit weights saturate. */
  readonly saturatesAt8Bits: boolean;
}

const WEIGHT_MAX = { 8: 127, 7: 63 } as const;

export async function resolveInt8Mode(choice: Int8WeightChoice = "auto"): Promise<Int8Mode> {
  const saturatesAt8Bits = !(await productsExact(WEIGHT_MAX[8]));
  const weightBits = choice === "auto" ? (saturatesAt8Bits ? 7 : 8) : choice === "8" ? 8 : 7;
  if (weightBits === 7 && !(await productsExact(WEIGHT_MAX[7]))) {
    throw new Error("ONNX Runtime's int8 products are not exact on this CPU even with 7-bit weights; use --precision float32");
  }
  return { weightBits, weightMax: WEIGHT_MAX[weightBits], saturatesAt8Bits };
}

const K = 64;
const N = 32;
/** One activation row, and several: ONNX Runtime has a separate kernel for a single row. */
const ROWS = [1, 8] as const;

const probes = new Map<number, Promise<boolean>>();

/**
 * Whether MatMulIntegerToFloat computes u8 255 (zero point 128) times s8 ±weightMax exactly on this
 * CPU, with the weights as a constant (prepacked, as the backbone's are) and as a graph input (as
 * a route's are). Run once per range and process: the kernel cannot change while it runs.
 */
export function productsExact(weightMax: number): Promise<boolean> {
  let probe = probes.get(weightMax);
  if (!probe) {
    probe = runProbe(weightMax);
    probes.set(weightMax, probe);
  }
  return probe;
}

async function runProbe(weightMax: number): Promise<boolean> {
  // Even columns +weightMax, odd ones −weightMax: saturation clips both ways.
  const weights = Int8Array.from({ length: K * N }, (_, i) => (i % N) % 2 === 0 ? weightMax : -weightMax);
  const g = new OnnxGraph();
  const scale = g.floats("a_scale", [], new Float32Array([1]));
  const columnScales = g.floats("b_scale", [N], new Float32Array(N).fill(1));
  const zeroPoint = g.uint8s("a_zero_point", [], Uint8Array.from([128]));
  const constant = g.int8s("b_constant", [K, N], weights);
  const input = g.input("b_input", INT8, [K, N]);
  const outputs: string[] = [];
  for (const rows of ROWS) {
    const a = g.input(`a${rows}`, UINT8, [rows, K]);
    for (const b of [constant, input]) {
      const name = `${a}_${b}`;
      g.node("MatMulIntegerToFloat", [a, b, scale, columnScales, zeroPoint], {}, { outputs: [name], domain: "ms" });
      g.output(name, FLOAT, [rows, N]);
      outputs.push(name);
    }
  }
  const session = await ort.InferenceSession.create(g.toBytes("int8-probe"), { executionProviders: ["cpu"], graphOptimizationLevel: "all", intraOpNumThreads: 1 });
  try {
    const feeds: Record<string, ort.Tensor> = { b_input: new ort.Tensor("int8", weights, [K, N]) };
    for (const rows of ROWS) feeds[`a${rows}`] = new ort.Tensor("uint8", new Uint8Array(rows * K).fill(255), [rows, K]);
    const results = await session.run(feeds);
    const exact = (j: number) => (255 - 128) * K * (j % 2 === 0 ? weightMax : -weightMax);
    return outputs.every((name) => (results[name].data as Float32Array).every((v, i) => v === exact(i % N)));
  } finally {
    await session.release();
  }
}
