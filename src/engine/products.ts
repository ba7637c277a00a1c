import type { Int8Mode } from "./int8-mode.js";
import { FLOAT, INT8, type Dim, type OnnxGraph } from "./onnx/graph.js";
import { quantizePerColumn } from "./quantize.js";
import type { Tensor } from "../formats/safetensors.js";

/**
 * Arithmetic of the graph's matrix products. `int8` quantizes weights per output column
 * (symmetric, to ±127, or ±63 on CPUs whose integer kernel would saturate: int8-mode.ts; backbone
 * weights when the graph is built, route weights once per route) and
 * activations per row, i.e. per token, at every call. Per token rather than per tensor because
 * BERT's hidden states hold a few tokens whose largest value is several times the typical token's:
 * one scale for the whole tensor leaves the other tokens a fraction of the 256 levels (about twice
 * the probability error in the comparison README: Precision describes). It also keeps an input's
 * answer independent of the other inputs batched with it.
 * Embeddings, LayerNorms, softmaxes and biases stay float32.
 */
export type Precision = "float32" | "int8";

/** What --precision asks for: one precision, or `auto`, the faster of the two on this machine (precision.ts). */
export type PrecisionChoice = Precision | "auto";
export const PRECISION_CHOICES: readonly PrecisionChoice[] = ["float32", "int8", "auto"];

/** What a graph is built with: float32, or int8 with the weight range chosen for this CPU. */
export type Arithmetic = "float32" | Int8Mode;

/** Graph input carrying the per-column scales of the quantized route input `name`. */
export const scaleInput = (name: string): string => `${name}.scale`;

interface QuantizedWeight {
  /** int8 [in, out] */
  readonly weight: string;
  /** float32 [out] */
  readonly columnScales: string;
}

/** Columns [i·c, (i+1)·c) of a [rows, parts·c] matrix. */
function columnBlock(matrix: Tensor, i: number, parts: number): Tensor {
  const [rows, cols] = matrix.shape;
  const width = cols / parts;
  const data = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) data.set(matrix.data.subarray(r * cols + i * width, r * cols + (i + 1) * width), r * width);
  return { shape: [rows, width], data };
}

/** Emits x·W (+ bias) in the chosen precision, W either a backbone constant or a route input. */
export class MatrixProducts {
  constructor(
    private readonly g: OnnxGraph,
    private readonly arithmetic: Arithmetic,
  ) {}

  constant(x: string, name: string, weight: Tensor): string {
    if (this.arithmetic === "float32") return this.g.op("MatMul", [x, this.g.floats(name, weight.shape, weight.data)]);
    return this.perToken(x, [this.quantizedConstant(name, weight, this.arithmetic)])[0];
  }

  private quantizedConstant(name: string, weight: Tensor, { weightMax }: Int8Mode): QuantizedWeight {
    const { values, scales } = quantizePerColumn(weight, weightMax);
    return { weight: this.g.int8s(name, weight.shape, values), columnScales: this.g.floats(scaleInput(name), [scales.length], scales) };
  }

  /** `dims` = [rows, columns] of the route input; the bias, if any, is a [columns] route input. */
  input(x: string, name: string, dims: [Dim, Dim], bias?: string): string {
    const g = this.g;
    const product =
      this.arithmetic === "float32"
        ? g.op("MatMul", [x, g.input(name, FLOAT, dims)])
        : this.perToken(x, [{ weight: g.input(name, INT8, dims), columnScales: g.input(scaleInput(name), FLOAT, [dims[1]]) }])[0];
    return bias ? g.op("Add", [product, g.input(bias, FLOAT, [dims[1]])]) : product;
  }

  /** Self-attention with its packed [Q | K | V] projection; `maskIndex` is the int32 [B, T] mask. */
  attention(x: string, name: string, weight: Tensor, bias: Tensor, maskIndex: string, numHeads: number): string {
    const g = this.g;
    const b = g.floats(`${name}.b`, bias.shape, bias.data);
    const { arithmetic } = this;
    if (arithmetic === "float32") {
      return g.op("Attention", [x, g.floats(`${name}.w`, weight.shape, weight.data), b, maskIndex], { num_heads: numHeads }, "ms");
    }
    // Q, K and V as three products of one quantized x rather than one packed product and a Split
    // (packed QKV input to MultiHeadAttention is not implemented on ONNX Runtime's CPU). The bias
    // goes to MultiHeadAttention, which adds it while it rearranges the heads.
    const [q, k, v] = this.perToken(x, (["q", "k", "v"] as const).map((part, i) => this.quantizedConstant(`${name}.w${part}`, columnBlock(weight, i, 3), arithmetic)));
    return g.op("MultiHeadAttention", [q, k, v, b, maskIndex], { num_heads: numHeads }, "ms");
  }

  /**
   * x·W for each W, with each row of x quantized on its own (once for all W): q = round(x / s) + 128
   * as uint8, s = max|x_row| / 127; the integer product takes the zero point 128 out, then the
   * result is scaled by s_column · s_row.
   */
  private perToken(x: string, weights: readonly QuantizedWeight[]): string[] {
    const g = this.g;
    const rows = g.op("Flatten", [x], { axis: -1 });
    // max|x| as max(max x, −min x): two passes that only read x, where Abs would write a copy.
    const rowMax = g.op("Max", [g.op("ReduceMax", [rows], { axes: [1], keepdims: 0 }), g.op("Neg", [g.op("ReduceMin", [rows], { axes: [1], keepdims: 0 })])]);
    const rowScale = g.op("Max", [g.op("Div", [rowMax, this.float("const.127", 127)]), this.float("const.tiny", 1e-30)]);
    const zeroPoint = this.uint8("const.u8_128", 128);
    const q = g.op("QuantizeLinear", [rows, rowScale, g.op("Expand", [zeroPoint, g.op("Shape", [rowScale])])], { axis: 0 });
    const rowScaleColumn = g.op("Unsqueeze", [rowScale, g.shared("const.axis1", () => g.ints("const.axis1", [1]))]);
    const leading = g.op("Shape", [x], { end: -1 });
    return weights.map(({ weight, columnScales }) => {
      const columnScaled = g.op("MatMulIntegerToFloat", [q, weight, this.float("const.one", 1), columnScales, zeroPoint], {}, "ms");
      const product = g.op("Mul", [columnScaled, rowScaleColumn]);
      return g.op("Reshape", [product, g.op("Concat", [leading, g.op("Shape", [weight], { start: 1 })], { axis: 0 })]);
    });
  }

  private float(name: string, value: number): string {
    return this.g.shared(name, () => this.g.floats(name, [], new Float32Array([value])));
  }

  private uint8(name: string, value: number): string {
    return this.g.shared(name, () => this.g.uint8s(name, [], Uint8Array.from([value])));
  }
}
