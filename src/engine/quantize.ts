import type { Tensor } from "../formats/safetensors.js";

export interface QuantizedMatrix {
  /** Row-major [in, out], symmetric: w ≈ q · scale[column], |q| ≤ the weightMax asked for. */
  readonly values: Int8Array;
  /** One scale per output column. */
  readonly scales: Float32Array;
}

/**
 * Below this a column is treated as zero. Around 1.5e-36 the scale max / 127 becomes subnormal in
 * float32, and below about 2e-43 w / scale falls outside the int8 range (for max / 63 a little
 * higher); 1e-30 keeps well clear of both, like the activations' smallest scale (products.ts).
 */
const NEGLIGIBLE_COLUMN_MAX = 1e-30;

/**
 * Symmetric per-column int8 quantization of a [in, out] matrix, the form com.microsoft
 * MatMulIntegerToFloat takes as a per-column b_scale with a zero point of 0. Per column rather
 * than per tensor because BERT weight columns differ in range by an order of magnitude, and one
 * scale would flatten the small ones. `weightMax` is 127, or 63 where the CPU's integer products
 * would saturate on larger weights (int8-mode.ts).
 */
export function quantizePerColumn(matrix: Tensor, weightMax: number): QuantizedMatrix {
  const [rows, cols] = matrix.shape;
  const { data } = matrix;
  const scales = new Float32Array(cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) scales[j] = Math.max(scales[j], Math.abs(data[i * cols + j]));
  }
  for (let j = 0; j < cols; j++) scales[j] = scales[j] >= NEGLIGIBLE_COLUMN_MAX ? scales[j] / weightMax : 1;
  const values = new Int8Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) values[i * cols + j] = Math.round(data[i * cols + j] / scales[j]);
  }
  return { values, scales };
}
