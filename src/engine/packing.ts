import type { BackboneConfig } from "./backbone.js";

/** Where one input lies in a batch: its row, first column and length. */
export interface Segment {
  readonly row: number;
  readonly offset: number;
  readonly length: number;
}

/** A padded batch of token ids, row-major [batch, seqLen]. */
export interface TokenBatch {
  /** Rows; one row holds several inputs when packed (segments). */
  readonly rows: number;
  readonly seqLen: number;
  readonly ids: BigInt64Array;
  readonly mask: BigInt64Array;
  /** Real (unpadded) length of each input. */
  readonly lengths: readonly number[];
  /** Where each input lies, when rows hold several (packBatch); absent: input b is row b, from its start. */
  readonly segments?: readonly Segment[];
}

/**
 * How inputs lie in a batch. Padded (padBatch): one input per row, from its start. Packed
 * (packBatch): several inputs side by side in one row, so that a pass computes little padding
 * whatever the mix of lengths. Rows are as wide as the longest input; inputs are placed first-fit
 * decreasing, whatever their routes (a graph with route slots picks each slot's tokens wherever
 * they lie). A packed graph (bert-graph.ts, `packed`) lets each token attend only to tokens of its
 * own input and numbers positions from each input's start, so an input's result does not depend
 * on what shares its row.
 */

/** Pads token id sequences into one batch (pad id 0), one input per row, as wide as the longest. */
export function padBatch(sequences: readonly (readonly number[])[], padId = 0): TokenBatch {
  const { ids, mask, seqLen } = fill(sequences, sequences.map((_, row) => ({ row, offset: 0 })), sequences.length, padId);
  return { rows: sequences.length, seqLen, ids, mask, lengths: sequences.map((s) => s.length) };
}

/** The inputs packed into rows as wide as the longest, each input whole; segments in input order. */
export function packBatch(sequences: readonly (readonly number[])[], padId = 0): TokenBatch {
  const lengths = sequences.map((ids) => ids.length);
  const { places, rows } = placeInRows(lengths, Math.max(1, ...lengths));
  const { ids, mask, seqLen } = fill(sequences, places, rows, padId);
  return { rows, seqLen, ids, mask, lengths, segments: places.map(({ row, offset }, i) => ({ row, offset, length: lengths[i] })) };
}

/** Token ids and mask of `rows` rows as wide as the longest sequence, each sequence at its place. */
function fill(sequences: readonly (readonly number[])[], places: readonly { row: number; offset: number }[], rows: number, padId: number) {
  const seqLen = Math.max(1, ...sequences.map((ids) => ids.length));
  const ids = new BigInt64Array(rows * seqLen).fill(BigInt(padId));
  const mask = new BigInt64Array(rows * seqLen);
  places.forEach(({ row, offset }, i) => {
    sequences[i].forEach((id, t) => {
      ids[row * seqLen + offset + t] = BigInt(id);
      mask[row * seqLen + offset + t] = 1n;
    });
  });
  return { ids, mask, seqLen };
}

/** Rows of `width` tokens that inputs of these lengths fill, first-fit decreasing; each input's row and offset. */
export function placeInRows(lengths: readonly number[], width: number): { places: { row: number; offset: number }[]; rows: number } {
  const used: number[] = [];
  const places: { row: number; offset: number }[] = new Array(lengths.length);
  const longestFirst = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  for (const i of longestFirst) {
    let row = used.findIndex((filled) => filled + lengths[i] <= width);
    if (row < 0) row = used.push(0) - 1;
    places[i] = { row, offset: used[row] };
    used[row] += lengths[i];
  }
  return { places, rows: used.length };
}

/** Where each input lies: as packed, or one input per row from its start. */
export function segmentsOf(batch: TokenBatch): readonly Segment[] {
  return batch.segments ?? batch.lengths.map((length, row) => ({ row, offset: 0, length }));
}

/** [B, T, T]: 1 where the token of the second index may be attended to from the first's, both in one input. */
export function attentionMask(batch: TokenBatch): BigInt64Array {
  const T = batch.seqLen;
  const mask = new BigInt64Array(batch.rows * T * T);
  for (const { row, offset, length } of segmentsOf(batch)) {
    for (let q = offset; q < offset + length; q++) mask.fill(1n, (row * T + q) * T + offset, (row * T + q) * T + offset + length);
  }
  return mask;
}

/**
 * [B, T]: each token's position within its input. BERT and DistilBERT count from 0. RoBERTa and
 * XLM-R count from padding_idx + 1, skipping tokens whose id is the padding id, which sit at
 * padding_idx as the library places them (bert-graph.ts, positionEmbeddings); columns outside any
 * input sit at padding_idx too.
 */
export function positionIds(batch: TokenBatch, config: BackboneConfig): BigInt64Array {
  const T = batch.seqLen;
  const paddingIdx = config.positionPaddingIdx;
  const positions = new BigInt64Array(batch.rows * T).fill(BigInt(paddingIdx ?? 0));
  for (const { row, offset, length } of segmentsOf(batch)) {
    let counted = 0;
    for (let t = 0; t < length; t++) {
      const at = row * T + offset + t;
      if (paddingIdx === undefined) positions[at] = BigInt(t);
      else if (batch.ids[at] !== BigInt(paddingIdx)) positions[at] = BigInt(paddingIdx + ++counted);
    }
  }
  return positions;
}
