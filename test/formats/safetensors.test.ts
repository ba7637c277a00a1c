import t from "tap";
import { ModelLoadError } from "../../src/errors.js";
import { parseSafetensors } from "../../src/formats/safetensors.js";

/** Builds a safetensors file from raw little-endian tensor bytes. */
function file(tensors: Record<string, { dtype: string; shape: number[]; bytes: Buffer }>, metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  const parts: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    parts.push(t.bytes);
    offset += t.bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, ...parts]);
}

const values = [0, 1, -2.5, 0.0999755859375, 65504, -0.000061035156];
const f32 = Buffer.from(Float32Array.from(values).buffer);
const f64 = Buffer.from(Float64Array.from(values).buffer);
/** Float16 bits of `values` (all exactly representable). */
const f16 = Buffer.from(Uint16Array.from([0x0000, 0x3c00, 0xc100, 0x2e66, 0x7bff, 0x8400]).buffer);
/** BF16 is the top half of the float32 bits (these values truncate exactly except where noted). */
const bf16 = Buffer.from(Uint16Array.from(Array.from(new Uint32Array(Float32Array.from([0, 1, -2.5, 0.5, 65536, -4]).buffer), (u) => u >>> 16)).buffer);

t.test("F32, F64, F16 and BF16 tensors all read as float32 with their shapes", async (t) => {
  const tensors = parseSafetensors(
    file(
      {
        f32: { dtype: "F32", shape: [2, 3], bytes: f32 },
        f64: { dtype: "F64", shape: [6], bytes: f64 },
        f16: { dtype: "F16", shape: [3, 2], bytes: f16 },
        bf16: { dtype: "BF16", shape: [6], bytes: bf16 },
      },
      { format: "pt" },
    ),
    "test.safetensors",
  );
  t.same([...tensors.keys()], ["f32", "f64", "f16", "bf16"], "metadata is not a tensor");
  t.same(tensors.get("f32")!.shape, [2, 3]);
  t.same(Array.from(tensors.get("f32")!.data), Array.from(Float32Array.from(values)));
  t.same(Array.from(tensors.get("f64")!.data), Array.from(Float32Array.from(values)), "F64 narrowed to float32");
  t.same(Array.from(tensors.get("f16")!.data), Array.from(Float32Array.from(values)), "F16 widened exactly");
  t.same(Array.from(tensors.get("bf16")!.data), [0, 1, -2.5, 0.5, 65536, -4], "BF16 widened exactly");
});

t.test("integer tensors are skipped, not read as weights", async (t) => {
  const tensors = parseSafetensors(
    file({ ids: { dtype: "I64", shape: [2], bytes: Buffer.alloc(16) }, w: { dtype: "F32", shape: [6], bytes: f32 } }),
    "test.safetensors",
  );
  t.same([...tensors.keys()], ["w"]);
});

t.test("an F16 infinity or NaN, and an F64 value beyond float32's range, are refused as non-finite", async (t) => {
  for (const [dtype, bytes] of [
    ["F16", Buffer.from(Uint16Array.from([0x3c00, 0x7c00]).buffer)],
    ["F16", Buffer.from(Uint16Array.from([0x7e00, 0x3c00]).buffer)],
    ["F64", Buffer.from(Float64Array.from([1, 1e300]).buffer)],
  ] as const) {
    t.throws(() => parseSafetensors(file({ w: { dtype, shape: [2], bytes } }), "x.safetensors"), {
      constructor: ModelLoadError,
      code: "non_finite_weights",
      message: /x\.safetensors: tensor w/,
    });
  }
});

t.test("data_offsets that do not match dtype × shape, or run past the file, are refused as malformed", async (t) => {
  const good = file({ w: { dtype: "F32", shape: [6], bytes: f32 } });
  const wrongShape = file({ w: { dtype: "F32", shape: [7], bytes: f32 } });
  t.throws(() => parseSafetensors(wrongShape, "x.safetensors"), { code: "malformed_file", message: /tensor w/ });
  t.throws(() => parseSafetensors(good.subarray(0, good.length - 1), "x.safetensors"), { code: "malformed_file", message: /tensor w/ });
  t.equal(parseSafetensors(good, "x.safetensors").get("w")!.data.length, 6);
});

t.test("a header larger, or with more entries, than any module holds is refused before its entries are read", async (t) => {
  const junk = Object.fromEntries(Array.from({ length: 600_000 }, (_, i) => [`junk.${i}`, { dtype: "I8", shape: [0], data_offsets: [0, 0] }]));
  const json = Buffer.from(JSON.stringify(junk));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  t.throws(() => parseSafetensors(Buffer.concat([length, json]), "x.safetensors"), { code: "malformed_file", message: /x\.safetensors: header of \d+ bytes exceeds the limit/ });

  const many = file(Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`t${i}`, { dtype: "I8", shape: [0], bytes: Buffer.alloc(0) }])));
  t.throws(() => parseSafetensors(many, "x.safetensors"), { code: "malformed_file", message: /lists 10001 tensors, more than the limit of 10000/ });
  const enough = file(Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`t${i}`, { dtype: "I8", shape: [0], bytes: Buffer.alloc(0) }])));
  t.equal(parseSafetensors(enough, "x.safetensors").size, 0, "10,000 entries are still read");
});

/** A header of its own (the ranges as given) over `body`. */
function rawFile(header: Record<string, unknown>, body: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, body]);
}

t.test("tensors whose ranges overlap or repeat are refused: nothing decodes one byte twice", async (t) => {
  // 1000 entries on one 1 MiB range: decoding each would take 1000 × the file.
  const mib = Buffer.alloc(1 << 20);
  const header = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`w${i}`, { dtype: "F32", shape: [1 << 18], data_offsets: [0, 1 << 20] }]));
  t.throws(() => parseSafetensors(rawFile(header, mib), "x.safetensors"), { code: "malformed_file", message: /overlap in the file/ });
  const partial = { a: { dtype: "F32", shape: [4], data_offsets: [0, 16] }, b: { dtype: "F32", shape: [4], data_offsets: [12, 28] } };
  t.throws(() => parseSafetensors(rawFile(partial, Buffer.alloc(28)), "x.safetensors"), { code: "malformed_file", message: /tensors a and b overlap/ });
  const empty = { a: { dtype: "F32", shape: [0], data_offsets: [0, 0] }, b: { dtype: "F32", shape: [4], data_offsets: [0, 16] } };
  t.equal(parseSafetensors(rawFile(empty, Buffer.alloc(16)), "x.safetensors").size, 2, "an empty tensor shares no byte with its neighbour");
});

t.test("a shape of more than 8 dimensions is refused before it is read", async (t) => {
  const header = { w: { dtype: "F32", shape: [1, ...Array(100_000).fill(1)], data_offsets: [0, 4] } };
  t.throws(() => parseSafetensors(rawFile(header, Buffer.alloc(4)), "x.safetensors"), { code: "malformed_file", message: /100001 dimensions, more than the limit of 8/ });
});

t.test("a filter decodes only the tensors it keeps, after checking every entry", async (t) => {
  const bytes = file({ keep: { dtype: "F32", shape: [6], bytes: f32 }, other: { dtype: "F32", shape: [6], bytes: f32 } });
  t.same([...parseSafetensors(bytes, "x.safetensors", (name) => name === "keep").keys()], ["keep"]);
  const wrong = rawFile({ keep: { dtype: "F32", shape: [1], data_offsets: [0, 4] }, other: { dtype: "F32", shape: [2], data_offsets: [4, 20] } }, Buffer.alloc(20));
  t.throws(() => parseSafetensors(wrong, "x.safetensors", (name) => name === "keep"), { code: "malformed_file", message: /tensor other/ }, "a tensor left out is still checked");
});
