import type { ForwardResult, FusionProbs, PassResult } from "./engine.js";
import { applyHead, type HeadOutput, type PredictionHead, type TaggingOutput } from "./heads.js";
import { segmentsOf, type Segment, type TokenBatch } from "./packing.js";

export interface InputReadout {
  readonly output: HeadOutput | TaggingOutput;
  /** [layer][adapter]: fusion attention averaged over the input's real tokens. */
  readonly fusionWeights?: number[][];
}

/** How to read one slot's inputs of a pass. */
export interface SlotReadout {
  readonly head: PredictionHead;
  readonly inputs: number;
  readonly explain: boolean;
}

/** Splits a batch's forward result back into per-input head outputs (and explanations). */
export function readout(head: PredictionHead, result: ForwardResult, batch: TokenBatch, hidden: number, explain: boolean): InputReadout[] {
  return readInputs(head, result.hidden, result.fusionProbs, batch.seqLen, segmentsOf(batch), hidden, explain);
}

/** The same for a pass of several routes: each slot's inputs (consecutive in input order) through its own head. */
export function readoutPass(result: PassResult, batch: TokenBatch, slots: readonly SlotReadout[], hidden: number): InputReadout[] {
  const segments = segmentsOf(batch);
  let first = 0;
  return slots.flatMap((slot, s) => {
    const own = segments.slice(first, (first += slot.inputs));
    return readInputs(slot.head, result.hidden, result.fusionProbs[s], batch.seqLen, own, hidden, slot.explain);
  });
}

/** The inputs at `segments`; `probs`, when given, covers exactly those inputs. */
function readInputs(
  head: PredictionHead,
  hiddenStates: Float32Array,
  probs: FusionProbs | undefined,
  seqLen: number,
  segments: readonly Segment[],
  hidden: number,
  explain: boolean,
): InputReadout[] {
  return segments.map(({ row, offset, length }, k) => {
    const start = (row * seqLen + offset) * hidden;
    const output = applyHead(head, hiddenStates.subarray(start, start + length * hidden), length, hidden);
    if (!explain || !probs) return { output };
    const { data, adapters: n, columns, starts } = probs;
    const layers = data.length / (n * columns);
    const weights: number[][] = [];
    for (let l = 0; l < layers; l++) {
      const perAdapter: number[] = [];
      for (let i = 0; i < n; i++) {
        const base = (l * n + i) * columns + starts[k];
        let sum = 0;
        for (let t = 0; t < length; t++) sum += data[base + t];
        perAdapter.push(sum / length);
      }
      weights.push(perAdapter);
    }
    return { output, fusionWeights: weights };
  });
}
