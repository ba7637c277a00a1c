import { readFile } from "node:fs/promises";
import { ModelLoadError } from "../errors.js";

/** A float32 tensor, row-major. */
export interface Tensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/**
 * Bounds on a header, far above what any module or backbone holds (an adapter has a few dozen
 * tensors per layer, a backbone a few hundred in all; an entry takes about 100 bytes of JSON), so
 * that a junk header is refused before it costs seconds of parsing.
 */
export const MAX_TENSORS = 10_000;
const MAX_HEADER_BYTES = 2 * 1024 * 1024;
/**
 * Dimensions of one tensor: weights have one or two, and torch itself stops at 64. Reading a shape
 * costs time in its number of dimensions, so a shape of 100,000 ones is refused before it is read.
 */
export const MAX_DIMS = 8;

/** Which tensors a reader decodes (by name); the others are checked for their place in the file only. */
export type TensorFilter = (name: string) => boolean;

/**
 * Reads every tensor of a safetensors file as float32 (F16/BF16 are widened, F64 narrowed;
 * integer and boolean tensors are skipped because no weight the engine uses is one, and other
 * dtypes such as float8 are refused). Throws ModelLoadError on a truncated or malformed file and
 * on non-finite values, naming the tensor. Tensors' byte ranges may not overlap (the format
 * forbids it), so what is decoded never exceeds the file's own data; `keep` decodes only the
 * tensors a caller uses.
 */
export async function readSafetensors(path: string): Promise<Map<string, Tensor>> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch {
    throw new ModelLoadError("missing_file", `cannot read ${path}`);
  }
  return parseSafetensors(bytes, path);
}

/** Element widths of the float dtypes read; integer and boolean tensors are skipped. */
const FLOAT_WIDTHS: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2 };
const SKIPPED_DTYPES = new Set(["BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64"]);

export function parseSafetensors(bytes: Buffer, source: string, keep: TensorFilter = () => true): Map<string, Tensor> {
  if (bytes.length < 8) throw new ModelLoadError("malformed_file", `${source}: too short for a safetensors file`);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  if (headerLength > MAX_HEADER_BYTES) {
    throw new ModelLoadError("malformed_file", `${source}: header of ${headerLength} bytes exceeds the limit of ${MAX_HEADER_BYTES}`);
  }
  if (8 + headerLength > bytes.length) {
    throw new ModelLoadError("malformed_file", `${source}: header length ${headerLength} exceeds the file`);
  }
  let header: unknown;
  try {
    header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
  } catch {
    throw new ModelLoadError("malformed_file", `${source}: header is not valid JSON`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new ModelLoadError("malformed_file", `${source}: header is not a JSON object`);
  }
  const entries = Object.keys(header).filter((name) => name !== "__metadata__").length;
  if (entries > MAX_TENSORS) {
    throw new ModelLoadError("malformed_file", `${source}: header lists ${entries} tensors, more than the limit of ${MAX_TENSORS}`);
  }
  const body = bytes.subarray(8 + headerLength);
  const checked = Object.entries(header as Record<string, unknown>)
    .filter(([name]) => name !== "__metadata__")
    .map(([name, entry]) => ({ name, ...checkEntry(entry, name, source) }));
  checkRanges(checked, body.length, source);
  const tensors = new Map<string, Tensor>();
  for (const { name, dtype, shape, begin, end } of checked) {
    if (SKIPPED_DTYPES.has(dtype)) continue;
    const width = FLOAT_WIDTHS[dtype];
    if (width === undefined) {
      throw new ModelLoadError("unsupported_config", `${source}: tensor ${name} has dtype ${dtype} (supported: ${Object.keys(FLOAT_WIDTHS).join(", ")})`);
    }
    const count = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== count * width) {
      throw new ModelLoadError("malformed_file", `${source}: tensor ${name} is truncated or has the wrong size`);
    }
    if (!keep(name)) continue;
    const data = decode(body.subarray(begin, end), dtype, count);
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) {
        throw new ModelLoadError("non_finite_weights", `${source}: tensor ${name} contains NaN or Inf`);
      }
    }
    tensors.set(name, { shape, data });
  }
  return tensors;
}

/** Every range lies inside the data, and no two share a byte: one range read twice would decode twice. */
function checkRanges(entries: readonly { name: string; begin: number; end: number }[], bodyLength: number, source: string) {
  const sorted = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 0; i < sorted.length; i++) {
    const { name, begin, end } = sorted[i];
    if (end > bodyLength) throw new ModelLoadError("malformed_file", `${source}: tensor ${name} is truncated or has the wrong size`);
    const before = sorted[i - 1];
    if (before && begin < before.end) {
      throw new ModelLoadError("malformed_file", `${source}: tensors ${before.name} and ${name} overlap in the file (bytes ${begin}..${Math.min(end, before.end)}); safetensors ranges never overlap`);
    }
  }
}

/** A header entry must be {dtype: string, shape: [non-negative ints], data_offsets: [begin, end]}. */
function checkEntry(entry: unknown, name: string, source: string) {
  const bad = (what: string) => new ModelLoadError("malformed_file", `${source}: header entry of tensor ${name} ${what}`);
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) throw bad("is not an object");
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  const isIndex = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  if (typeof dtype !== "string") throw bad("has no dtype");
  if (!Array.isArray(shape)) throw bad("has no valid shape");
  if (shape.length > MAX_DIMS) throw bad(`has ${shape.length} dimensions, more than the limit of ${MAX_DIMS}`);
  if (!shape.every(isIndex)) throw bad("has no valid shape");
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex) || offsets[0] > offsets[1]) {
    throw bad("has no valid data_offsets");
  }
  return { dtype, shape: shape as number[], begin: offsets[0] as number, end: offsets[1] as number };
}

function decode(raw: Buffer, dtype: string, count: number): Float32Array {
  const out = new Float32Array(count);
  if (dtype === "F32") {
    // Copy into an aligned buffer: the slice offset inside the file is not 4-byte aligned in general.
    new Uint8Array(out.buffer).set(raw);
    return out;
  }
  if (dtype === "F64") {
    for (let i = 0; i < count; i++) out[i] = raw.readDoubleLE(8 * i);
    return out;
  }
  const scratch = new DataView(new ArrayBuffer(4));
  for (let i = 0; i < count; i++) {
    const bits = raw.readUInt16LE(2 * i);
    if (dtype === "BF16") {
      scratch.setUint32(0, bits << 16);
      out[i] = scratch.getFloat32(0);
    } else {
      out[i] = halfToFloat(bits);
    }
  }
  return out;
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}
