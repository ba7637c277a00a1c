import type { Tensor } from "../formats/safetensors.js";
import { sigmoid, softmax } from "./linalg.js";

export type HeadType = "classification" | "multilabel_classification" | "tagging";

/** A prediction head as AdapterHub builds it: linear layers with an activation between them. */
export interface PredictionHead {
  readonly type: HeadType;
  readonly labels: readonly string[];
  /** Weights laid out [in, out]. */
  readonly linears: readonly { readonly weight: Tensor; readonly bias: Tensor | null }[];
  readonly activation: Activation;
}

export type Activation = "tanh" | "relu" | "gelu" | "sigmoid" | "linear";

const ACTIVATIONS: Record<Activation, (v: number) => number> = {
  tanh: Math.tanh,
  relu: (v) => Math.max(0, v),
  gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
  sigmoid,
  linear: (v) => v,
};

export interface HeadOutput {
  readonly logits: number[];
  /** softmax for classification, per-label sigmoid for multi-label. */
  readonly probabilities: number[];
}

export interface TaggingOutput {
  /** One entry per token of the input, special tokens included. */
  readonly tokens: HeadOutput[];
}

/** Applies the head to one input's hidden states (`hidden` is [seqLen, d] of that input). */
export function applyHead(head: PredictionHead, hidden: Float32Array, length: number, d: number): HeadOutput | TaggingOutput {
  if (head.type === "tagging") {
    const tokens: HeadOutput[] = [];
    for (let t = 0; t < length; t++) {
      const logits = forward(head, hidden.subarray(t * d, (t + 1) * d));
      tokens.push({ logits, probabilities: softmax(logits) });
    }
    return { tokens };
  }
  // Sequence heads read the first ([CLS]) token, as AdapterHub's heads do without a pooler.
  const logits = forward(head, hidden.subarray(0, d));
  const probabilities = head.type === "multilabel_classification" ? logits.map(sigmoid) : softmax(logits);
  return { logits, probabilities };
}

function forward(head: PredictionHead, input: Float32Array): number[] {
  let x: ArrayLike<number> = input;
  head.linears.forEach((layer, i) => {
    const [inDim, outDim] = layer.weight.shape;
    const out = new Float64Array(outDim);
    for (let o = 0; o < outDim; o++) out[o] = layer.bias ? layer.bias.data[o] : 0;
    for (let k = 0; k < inDim; k++) {
      const xk = x[k];
      const row = k * outDim;
      for (let o = 0; o < outDim; o++) out[o] += xk * layer.weight.data[row + o];
    }
    if (i < head.linears.length - 1) {
      const act = ACTIVATIONS[head.activation];
      for (let o = 0; o < outDim; o++) out[o] = act(out[o]);
    }
    x = out;
  });
  return Array.from(x);
}

/** Abramowitz–Stegun 7.1.26 would lose digits; this series/continued-fraction pair keeps ~1e-15. */
function erf(x: number): number {
  const sign = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  if (a < 2.5) {
    let sum = a;
    let term = a;
    for (let n = 1; n < 60; n++) {
      term *= (-a * a) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return (sign * 2 * sum) / Math.sqrt(Math.PI);
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (a + f);
  return sign * (1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + f));
}
