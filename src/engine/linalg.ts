import type { Tensor } from "../formats/safetensors.js";

/** Small dense float32 routines for load-time weight preparation and the prediction heads. */

export function transpose(t: Tensor): Tensor {
  const [rows, cols] = t.shape;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = t.data[r * cols + c];
  return { shape: [cols, rows], data: out };
}

/** The arrays one after another in one new array. */
export function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

export function identity(d: number): Tensor {
  const data = new Float32Array(d * d);
  for (let i = 0; i < d; i++) data[i * d + i] = 1;
  return { shape: [d, d], data };
}

export function softmax(values: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) max = Math.max(max, values[i]);
  const exps = Array.from(values, (v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

export function sigmoid(v: number): number {
  return 1 / (1 + Math.exp(-v));
}
