import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { parseSafetensors } from "../../src/formats/safetensors.js";
import { ModelLoadError } from "../../src/errors.js";
import { statusOf } from "../../src/server/status.js";
import { parseTorchSave } from "../../src/formats/torch-pickle.js";
import { FIXTURES } from "../fixtures.js";
import { zip } from "./torch-zip.js";

/**
 * The .bin reader: what torch.save writes for a state dict reads back exactly, views included;
 * anything else is refused with a ModelLoadError before any of it is built, and nothing in the
 * file runs.
 */

const LOADERS = join(FIXTURES, "loaders");
type Code = ConstructorParameters<typeof ModelLoadError>[0];

function refused(t: Tap, bytes: Buffer, code: Code, ...mentions: (string | RegExp)[]) {
  let error: unknown;
  try {
    parseTorchSave(bytes, "test.bin");
  } catch (e) {
    error = e;
  }
  t.ok(error instanceof ModelLoadError, "refused with a ModelLoadError");
  const e = error as ModelLoadError;
  t.equal(e?.code, code, `code ${code}`);
  t.equal(statusOf(e), 422, "answered 422");
  for (const m of mentions) t.match(e?.message, m, `the message names ${String(m)}`);
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

// ---------------------------------------------------------------------------------------------
// Archives written by torch.save
// ---------------------------------------------------------------------------------------------

t.test("views, shared storages, half, bfloat16 and float64 read back as torch holds them", async (t) => {
  const expected = parseSafetensors(readFileSync(join(LOADERS, "tensors/views.safetensors")), "views.safetensors");
  for (const file of ["views.bin", "ordered.bin"]) {
    const tensors = parseTorchSave(readFileSync(join(LOADERS, "tensors", file)), file);
    t.same([...tensors.keys()].sort(), [...expected.keys()].sort(), `${file}: every float tensor, the int64 one skipped`);
    for (const [name, want] of expected) {
      const got = tensors.get(name)!;
      t.same(got.shape, want.shape, `${file} ${name}: shape [${want.shape}]`);
      t.ok(
        got.data.length === want.data.length && got.data.every((v, i) => Object.is(v, want.data[i])),
        `${file} ${name}: every value exact`,
      );
    }
  }
});

t.test("every .bin holding something other than tensors is refused, naming what it holds, and runs nothing", async (t) => {
  const cases: [string, RegExp][] = [
    ["os_system.bin", /names the global (posix|os)\.system/],
    ["tensor_subclass.bin", /names the global torch\._tensor\._rebuild_from_type_v2/],
    ["object.bin", /names the global __main__\.Weights/],
    ["parameter.bin", /names the global torch\._utils\._rebuild_parameter/],
    ["list.bin", /pickle opcode 0x5d/],
    ["complex.bin", /names the global torch\.ComplexFloatStorage/],
  ];
  for (const [file, mention] of cases) {
    t.test(file, async (t) => refused(t, readFileSync(join(LOADERS, "unsafe", file)), "unsupported_config", mention, "test.bin"));
  }
  t.notOk(existsSync("pwned.txt") || existsSync(join(LOADERS, "unsafe", "pwned.txt")), "os_system.bin's command did not run");
});

// ---------------------------------------------------------------------------------------------
// Hand-made archives and pickles
// ---------------------------------------------------------------------------------------------

/** Pickle opcodes, spelled as bytes. */
const P = {
  proto: Buffer.from([0x80, 2]),
  stop: Buffer.from("."),
  mark: Buffer.from("("),
  tuple: Buffer.from("t"),
  emptyDict: Buffer.from("}"),
  emptyTuple: Buffer.from(")"),
  reduce: Buffer.from("R"),
  build: Buffer.from("b"),
  setitem: Buffer.from("s"),
  persid: Buffer.from("Q"),
  false: Buffer.from([0x89]),
  global: (module: string, name: string) => Buffer.from(`c${module}\n${name}\n`),
  str: (s: string) => {
    const b = Buffer.from(s);
    const head = Buffer.alloc(5);
    head.write("X", 0);
    head.writeUInt32LE(b.length, 1);
    return Buffer.concat([head, b]);
  },
  int: (n: number) => {
    const b = Buffer.alloc(5);
    b.write("J", 0);
    b.writeInt32LE(n, 1);
    return b;
  },
  ints: (ns: number[]) => Buffer.concat([P.mark, ...ns.map(P.int), P.tuple]),
};

interface TensorSpec {
  storage?: string;
  numel: number;
  offset?: number;
  shape: number[];
  stride: number[];
  hooks?: Buffer;
  key?: string;
}

/** _rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict()) as torch pickles it. */
function tensor(spec: TensorSpec): Buffer {
  const storageId = Buffer.concat([P.mark, P.str("storage"), P.global("torch", spec.storage ?? "FloatStorage"), P.str(spec.key ?? "0"), P.str("cpu"), P.int(spec.numel), P.tuple, P.persid]);
  const hooks = spec.hooks ?? Buffer.concat([P.global("collections", "OrderedDict"), P.emptyTuple, P.reduce]);
  return Buffer.concat([
    P.global("torch._utils", "_rebuild_tensor_v2"),
    P.mark,
    storageId,
    P.int(spec.offset ?? 0),
    P.ints(spec.shape),
    P.ints(spec.stride),
    P.false,
    hooks,
    P.tuple,
    P.reduce,
  ]);
}

function pickle(...body: Buffer[]): Buffer {
  return Buffer.concat([P.proto, ...body, P.stop]);
}

/** {"w": <value>} */
function stateDict(value: Buffer): Buffer {
  return pickle(P.emptyDict, P.str("w"), value, P.setitem);
}

function floats(values: number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeFloatLE(v, 4 * i));
  return b;
}

function archive(pkl: Buffer, storage = floats([1, 2, 3, 4, 5, 6]), extra: Record<string, Buffer> = {}, options = {}): Buffer {
  return zip({ "archive/data.pkl": pkl, "archive/byteorder": Buffer.from("little"), "archive/data/0": storage, ...extra }, options);
}

const W23 = { numel: 6, shape: [2, 3], stride: [3, 1] };

t.test("control: a hand-made state dict reads, contiguous or strided", async (t) => {
  const plain = parseTorchSave(archive(stateDict(tensor(W23))), "test.bin").get("w")!;
  t.same(plain.shape, [2, 3]);
  t.same([...plain.data], [1, 2, 3, 4, 5, 6]);
  const transposed = parseTorchSave(archive(stateDict(tensor({ numel: 6, shape: [3, 2], stride: [1, 3] }))), "test.bin").get("w")!;
  t.same([...transposed.data], [1, 4, 2, 5, 3, 6]);
  const tail = parseTorchSave(archive(stateDict(tensor({ numel: 6, offset: 4, shape: [2], stride: [1] }))), "test.bin").get("w")!;
  t.same([...tail.data], [5, 6]);
});

t.test("a pickle naming os.system, builtins.eval or any other global is refused before anything is built, and nothing runs", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "torch-pickle-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const marker = join(dir, "ran");
  const shell = Buffer.concat([P.global("os", "system"), P.mark, P.str(`touch ${marker}`), P.tuple, P.reduce]);
  refused(t, archive(stateDict(shell)), "unsupported_config", "names the global os.system", "refused without running anything");
  refused(t, archive(pickle(shell)), "unsupported_config", "os.system");
  // protocol 4 spelling: STACK_GLOBAL of two strings
  const evalCall = Buffer.concat([Buffer.from([0x8c, 8]), Buffer.from("builtins"), Buffer.from([0x8c, 4]), Buffer.from("eval"), Buffer.from([0x93]), P.mark, P.str("1"), P.tuple, P.reduce]);
  refused(t, archive(stateDict(evalCall)), "unsupported_config", "builtins.eval");
  refused(t, archive(stateDict(Buffer.concat([P.global("torch", "load"), P.emptyTuple, P.reduce]))), "unsupported_config", "torch.load");
  refused(t, archive(stateDict(Buffer.concat([P.global("torch._utils", "_rebuild_parameter"), P.emptyTuple, P.reduce]))), "unsupported_config", "_rebuild_parameter");
  t.notOk(existsSync(marker), "the command did not run");
});

t.test("the allowed globals are refused when used for anything but a plain tensor", async (t) => {
  refused(t, archive(stateDict(tensor({ ...W23, hooks: Buffer.concat([P.global("collections", "OrderedDict"), P.emptyTuple, P.reduce, P.str("h"), P.int(1), P.setitem]) }))), "unsupported_config", "no hooks");
  refused(t, archive(stateDict(Buffer.concat([P.global("torch", "FloatStorage"), P.emptyTuple, P.reduce]))), "unsupported_config", "torch.FloatStorage");
  refused(t, archive(stateDict(Buffer.concat([P.global("collections", "OrderedDict"), P.mark, P.int(1), P.tuple, P.reduce]))), "unsupported_config", "collections.OrderedDict with 1 argument");
  refused(t, archive(stateDict(Buffer.concat([tensor(W23), P.emptyDict, P.build]))), "unsupported_config", "BUILD");
  refused(t, archive(stateDict(Buffer.concat([P.mark, P.str("module"), P.str("x"), P.tuple, P.persid]))), "unsupported_config", "persistent id other than a tensor storage");
  refused(t, archive(stateDict(Buffer.concat([P.global("torch", "FloatStorage")]))), "unsupported_config", "holds torch.FloatStorage");
  refused(t, archive(stateDict(P.str("not a tensor"))), "unsupported_config", '"w" holds a string');
  refused(t, archive(pickle(tensor(W23))), "unsupported_config", "not a state dict");
  refused(t, archive(stateDict(Buffer.from("]"))), "unsupported_config", "pickle opcode 0x5d");
  refused(t, archive(stateDict(Buffer.from("i__main__\nX\n"))), "unsupported_config", "pickle opcode 0x69");
});

t.test("a view outside its storage, a storage of the wrong size, NaN: refused", async (t) => {
  refused(t, archive(stateDict(tensor({ numel: 6, offset: 5, shape: [2], stride: [1] }))), "malformed_file", "outside its storage");
  refused(t, archive(stateDict(tensor({ numel: 6, shape: [1000000], stride: [0] }))), "malformed_file", "outside its storage");
  refused(t, archive(stateDict(tensor({ numel: 7, shape: [7], stride: [1] }))), "malformed_file", "storage 0 holds 24 bytes");
  refused(t, archive(stateDict(tensor({ ...W23, key: "9" }))), "malformed_file", "storage 9 has no data record");
  refused(t, archive(stateDict(tensor(W23)), floats([1, 2, NaN, 4, 5, 6])), "non_finite_weights", "tensor w contains NaN");
});

t.test("legacy, corrupt, truncated, big-endian or rootless archives: refused", async (t) => {
  const good = archive(stateDict(tensor(W23)));
  // The legacy format opens with a pickled magic number (LONG1 0x1950a86a20f9469cfc6c).
  refused(t, Buffer.from("80028a0a6c fc9c46f9206a a8501950".replace(/ /g, ""), "hex"), "unsupported_config", "legacy torch.save format");
  refused(t, Buffer.from("not a save"), "malformed_file", "neither a zip archive nor a pickle");
  const corrupt = Buffer.from(good);
  corrupt[good.indexOf("archive/data/0") + "archive/data/0".length + 2] ^= 0xff;
  refused(t, corrupt, "malformed_file", "CRC");
  refused(t, good.subarray(0, good.length - 30), "malformed_file", "test.bin");
  refused(t, archive(stateDict(tensor(W23)), undefined, { "archive/byteorder": Buffer.from("big") }), "unsupported_config", "byteorder 'big'");
  refused(t, zip({ "data.pkl": stateDict(tensor(W23)) }), "malformed_file", "one <name>/data.pkl");
  refused(t, archive(stateDict(tensor(W23)).subarray(0, 20)), "malformed_file", "truncated");
  refused(t, archive(stateDict(tensor(W23)), undefined, {}, { deflate: true }), "unsupported_config", "compressed (method 8)");
});

// ---------------------------------------------------------------------------------------------
// Hostile files: work and memory bounded whatever the file holds
// ---------------------------------------------------------------------------------------------

t.test("a pickle of millions of one-byte opcodes is refused after a bounded number of values", async (t) => {
  // 24 Mi EMPTY_DICTs: one object per byte would exhaust the heap.
  refused(t, archive(pickle(Buffer.alloc(24 << 20, "}"))), "malformed_file", "values on the stack");
  // Set as items of one dict, so nothing stays on the stack: the value budget stops it.
  const items = Buffer.alloc(3 << 20);
  for (let i = 0; i < items.length; i += 3) items.write("}}s", i, "latin1");
  refused(t, archive(pickle(P.emptyDict, items)), "malformed_file", /builds more than \d+ values/);
});

t.test("entries sharing one storage decode at most one float per 2 bytes of the file's tensor data", async (t) => {
  const storage = floats(Array.from({ length: 1024 }, (_, i) => i));
  const spec = { numel: 1024, shape: [1024], stride: [1] };
  const entries = (n: number) => pickle(P.emptyDict, ...Array.from({ length: n }, (_, i) => Buffer.concat([P.str(`w${i}`), tensor(spec), P.setitem])));
  t.equal(parseTorchSave(archive(entries(2), storage), "test.bin").size, 2, "a base and a view of it read (the 2 × budget)");
  refused(t, archive(entries(100), storage), "malformed_file", "the same storage bytes over and over");
  const kept = parseTorchSave(archive(entries(100), storage), "test.bin", (name) => name === "w7");
  t.same([...kept.keys()], ["w7"], "a filter decodes only the tensors it names, and the others cost nothing");
});

t.test("zip entries pointing at one member, or listing a name twice, are refused", async (t) => {
  const good = archive(stateDict(tensor(W23)));
  const end = good.length - 22;
  const directory = good.readUInt32LE(end + 16);
  const size = good.readUInt32LE(end + 12);
  // Entry 3 (archive/data/0) repeated under other names: the same local header offset each time.
  const centrals: Buffer[] = [];
  for (let o = directory; o < directory + size; ) {
    const length = 46 + good.readUInt16LE(o + 28) + good.readUInt16LE(o + 30) + good.readUInt16LE(o + 32);
    centrals.push(good.subarray(o, o + length));
    o += length;
  }
  const copies = Array.from({ length: 1000 }, (_, i) => {
    const entry = Buffer.from(centrals[2]);
    const name = Buffer.from(`archive/data/x${String(i).padStart(1, "0")}`);
    entry.writeUInt16LE(name.length, 28);
    return Buffer.concat([entry.subarray(0, 46), name]);
  });
  const rebuilt = (entries: Buffer[]) => {
    const dir = Buffer.concat(entries);
    const tail = Buffer.from(good.subarray(end));
    tail.writeUInt16LE(entries.length, 8);
    tail.writeUInt16LE(entries.length, 10);
    tail.writeUInt32LE(dir.length, 12);
    return Buffer.concat([good.subarray(0, directory), dir, tail]);
  };
  refused(t, rebuilt([...centrals, ...copies]), "malformed_file", "point at the same member");
  refused(t, rebuilt([...centrals, centrals[2]]), "malformed_file", "lists archive/data/0 twice");
});

t.test("a tensor of more than 8 dimensions is refused before its shape is walked", async (t) => {
  refused(t, archive(stateDict(tensor({ numel: 6, shape: [6, 1, 1, 1, 1, 1, 1, 1, 1], stride: [1, 1, 1, 1, 1, 1, 1, 1, 1] }))), "unsupported_config", "9 dimensions");
  refused(t, archive(stateDict(tensor({ numel: 6, shape: [6, ...Array(9000).fill(1)], stride: [1, ...Array(9000).fill(1)] }))), "malformed_file", "values on the stack");
});
