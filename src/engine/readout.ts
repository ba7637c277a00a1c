import type { ForwardResult, FusionProbs, PassResult, TokenBatch } from "./engine.js";
import { applyHead, type HeadOutput, type PredictionHead, type TaggingOutput } from "./heads.js";

export interface InputReadout {
  readonly output: HeadOutput | TaggingOutput;
  /** [layer][adapter]: fusion attention averaged over the input's real tokens. */
  readonly fusionWeights?: number[][];
}

/** How to read one slot's rows of a pass. */
export interface SlotReadout {
  readonly head: PredictionHead;
  readonly rows: number;
  readonly explain: boolean;
}

/** Splits a batch's forward result back into per-input head outputs (and explanations). */
export function readout(head: PredictionHead, result: ForwardResult, batch: TokenBatch, hidden: number, explain: boolean): InputReadout[] {
  return readRows(head, result.hidden, result.fusionProbs, batch, 0, batch.batch, hidden, explain);
}

/** The same for a pass of several routes: each slot's rows through its own head. */
export function readoutPass(result: PassResult, batch: TokenBatch, slots: readonly SlotReadout[], hidden: number): InputReadout[] {
  let first = 0;
  return slots.flatMap((slot, s) => {
    const outputs = readRows(slot.head, result.hidden, result.fusionProbs[s], batch, first, slot.rows, hidden, slot.explain);
    first += slot.rows;
    return outputs;
  });
}

/** Rows [first, first + rows) of the batch; `probs` covers exactly those rows. */
function readRows(
  head: PredictionHead,
  hiddenStates: Float32Array,
  probs: FusionProbs | undefined,
  batch: TokenBatch,
  first: number,
  rows: number,
  hidden: number,
  explain: boolean,
): InputReadout[] {
  const { seqLen } = batch;
  return Array.from({ length: rows }, (_, r) => {
    const b = first + r;
    const length = batch.lengths[b];
    const output = applyHead(head, hiddenStates.subarray(b * seqLen * hidden, (b + 1) * seqLen * hidden), length, hidden);
    if (!explain || !probs) return { output };
    const { data, adapters: n } = probs;
    const layers = data.length / (n * rows * seqLen);
    const weights: number[][] = [];
    for (let l = 0; l < layers; l++) {
      const perAdapter: number[] = [];
      for (let i = 0; i < n; i++) {
        const base = (l * n + i) * rows * seqLen + r * seqLen;
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
