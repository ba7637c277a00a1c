import type { ForwardResult, TokenBatch } from "./engine.js";
import { applyHead, type HeadOutput, type PredictionHead, type TaggingOutput } from "./heads.js";

export interface InputReadout {
  readonly output: HeadOutput | TaggingOutput;
  /** [layer][adapter]: fusion attention averaged over the input's real tokens. */
  readonly fusionWeights?: number[][];
}

/** Splits a batch's forward result back into per-input head outputs (and explanations). */
export function readout(head: PredictionHead, result: ForwardResult, batch: TokenBatch, hidden: number, explain: boolean): InputReadout[] {
  const { seqLen } = batch;
  return batch.lengths.map((length, b) => {
    const rows = result.hidden.subarray(b * seqLen * hidden, (b + 1) * seqLen * hidden);
    const output = applyHead(head, rows, length, hidden);
    if (!explain || !result.fusionProbs) return { output };
    const { data, adapters: n } = result.fusionProbs;
    const layers = data.length / (n * batch.batch * seqLen);
    const weights: number[][] = [];
    for (let l = 0; l < layers; l++) {
      const perAdapter: number[] = [];
      for (let i = 0; i < n; i++) {
        const base = (l * n + i) * batch.batch * seqLen + b * seqLen;
        let sum = 0;
        for (let t = 0; t < length; t++) sum += data[base + t];
        perAdapter.push(sum / length);
      }
      weights.push(perAdapter);
    }
    return { output, fusionWeights: weights };
  });
}

/** Pads token id sequences into one batch (pad id 0), as wide as the longest. */
export function padBatch(sequences: readonly (readonly number[])[], padId = 0): TokenBatch {
  const seqLen = Math.max(1, ...sequences.map((s) => s.length));
  const ids = new BigInt64Array(sequences.length * seqLen).fill(BigInt(padId));
  const mask = new BigInt64Array(sequences.length * seqLen);
  sequences.forEach((s, b) => {
    s.forEach((id, t) => {
      ids[b * seqLen + t] = BigInt(id);
      mask[b * seqLen + t] = 1n;
    });
  });
  return { batch: sequences.length, seqLen, ids, mask, lengths: sequences.map((s) => s.length) };
}
