import { crc32 } from "node:zlib";
import { ModelLoadError } from "../errors.js";
import { halfToFloat, MAX_DIMS, MAX_TENSORS, type Tensor, type TensorFilter } from "./safetensors.js";

/**
 * Reads the PyTorch `.bin` files that `torch.save(state_dict)` writes (the zip format of PyTorch
 * ≥ 1.6) without executing anything they contain. A pickle is a program: a general unpickler
 * calls whatever global the file names. This one is a small interpreter for the opcodes and the
 * globals a state dict of tensors uses (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * the torch.*Storage types behind storage persistent ids), each implemented here; any other
 * global is refused when the file names it, before anything is built, and any other opcode
 * where it occurs.
 *
 * Float tensors (float32, float16, bfloat16, float64) come back as float32, read through their
 * storage offset and strides; integer and boolean tensors are skipped, as the safetensors reader
 * skips them, because no weight the engine uses is one.
 *
 * Work and memory are bounded, whatever the file holds: the interpreter builds at most one value
 * per opcode and MAX_VALUES in all, holds at most MAX_STACK of them on its stack, reads every zip
 * member (and computes its CRC) once, and decodes at most one float per 2 bytes of tensor data
 * (`keep` choosing which tensors), so storages shared between entries cannot multiply a small
 * file into gigabytes.
 */
export function parseTorchSave(bytes: Buffer, source: string, keep: TensorFilter = () => true): Map<string, Tensor> {
  if (bytes.subarray(0, 4).equals(ZIP_LOCAL)) return readArchive(readZip(bytes, source), source, keep);
  if (bytes[0] === 0x80) {
    throw new ModelLoadError(
      "unsupported_config",
      `${source}: written in the legacy torch.save format of PyTorch before 1.6, which is not read; load and save it again with a current PyTorch, or save with use_safetensors=True`,
    );
  }
  throw new ModelLoadError("malformed_file", `${source}: not a PyTorch save (neither a zip archive nor a pickle)`);
}

// ---------------------------------------------------------------------------------------------
// Zip
// ---------------------------------------------------------------------------------------------

const ZIP_LOCAL = Buffer.from([0x50, 0x4b, 0x03, 0x04]);
const ZIP_CENTRAL = 0x02014b50;
const ZIP_END = 0x06054b50;
const ZIP64_END = 0x06064b50;
const ZIP64_LOCATOR = 0x07064b50;

function readZip(bytes: Buffer, source: string): Map<string, Buffer> {
  const bad = (what: string) => new ModelLoadError("malformed_file", `${source}: ${what}`);
  let end = -1;
  for (let o = bytes.length - 22; o >= Math.max(0, bytes.length - 22 - 0xffff); o--) {
    if (bytes.readUInt32LE(o) === ZIP_END) {
      end = o;
      break;
    }
  }
  if (end < 0) throw bad("truncated zip archive (no end of central directory)");
  let count = bytes.readUInt16LE(end + 10);
  let directory = bytes.readUInt32LE(end + 16);
  // torch writes zip64 records; their values stand where the classic record holds 0xFFFF… markers.
  if (end >= 20 && bytes.readUInt32LE(end - 20) === ZIP64_LOCATOR) {
    const at = safeNumber(bytes.readBigUInt64LE(end - 12), bad);
    if (at + 56 > bytes.length || bytes.readUInt32LE(at) !== ZIP64_END) throw bad("malformed zip64 end of central directory");
    count = safeNumber(bytes.readBigUInt64LE(at + 32), bad);
    directory = safeNumber(bytes.readBigUInt64LE(at + 48), bad);
  }
  const files = new Map<string, Buffer>();
  const members = new Map<number, string>();
  let o = directory;
  for (let i = 0; i < count; i++) {
    if (o + 46 > bytes.length || bytes.readUInt32LE(o) !== ZIP_CENTRAL) throw bad("malformed zip central directory");
    const method = bytes.readUInt16LE(o + 10);
    const crc = bytes.readUInt32LE(o + 16);
    let size = bytes.readUInt32LE(o + 20);
    let unpacked = bytes.readUInt32LE(o + 24);
    const nameLength = bytes.readUInt16LE(o + 28);
    const extraLength = bytes.readUInt16LE(o + 30);
    const commentLength = bytes.readUInt16LE(o + 32);
    let local = bytes.readUInt32LE(o + 42);
    const name = bytes.subarray(o + 46, o + 46 + nameLength).toString("utf8");
    const extra = bytes.subarray(o + 46 + nameLength, o + 46 + nameLength + extraLength);
    for (let e = 0; e + 4 <= extra.length; e += 4 + extra.readUInt16LE(e + 2)) {
      if (extra.readUInt16LE(e) !== 1) continue;
      // The zip64 field lists, in this order, only the values whose classic field is saturated.
      let f = e + 4;
      const next = () => {
        if (f + 8 > e + 4 + extra.readUInt16LE(e + 2)) throw bad(`malformed zip64 field of ${name}`);
        const v = safeNumber(extra.readBigUInt64LE(f), bad);
        f += 8;
        return v;
      };
      if (unpacked === 0xffffffff) unpacked = next();
      if (size === 0xffffffff) size = next();
      if (local === 0xffffffff) local = next();
    }
    o += 46 + nameLength + extraLength + commentLength;
    if (files.has(name)) throw bad(`zip archive lists ${name} twice`);
    // Entries sharing one member would each be checked and read again: a few bytes of directory
    // could stand for gigabytes of work.
    const other = members.get(local);
    if (other !== undefined) throw bad(`zip entries ${other} and ${name} point at the same member`);
    members.set(local, name);
    if (local + 30 > bytes.length || !bytes.subarray(local, local + 4).equals(ZIP_LOCAL)) throw bad(`malformed zip entry ${name}`);
    const start = local + 30 + bytes.readUInt16LE(local + 26) + bytes.readUInt16LE(local + 28);
    if (start + size > bytes.length) throw bad(`zip entry ${name} is truncated`);
    // torch.save stores every entry uncompressed; reading only that keeps a small file from
    // inflating into gigabytes.
    if (method !== 0) {
      throw new ModelLoadError("unsupported_config", `${source}: zip entry ${name} is compressed (method ${method}); torch.save stores entries uncompressed`);
    }
    const data = bytes.subarray(start, start + size);
    if (size !== unpacked || crc32(data) !== crc) throw bad(`zip entry ${name} is corrupt (size or CRC mismatch)`);
    files.set(name, data);
  }
  return files;
}

function safeNumber(v: bigint, bad: (what: string) => Error): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad("zip offset out of range");
  return Number(v);
}

// ---------------------------------------------------------------------------------------------
// The archive torch.save writes: <root>/data.pkl, <root>/data/<storage key>, <root>/byteorder
// ---------------------------------------------------------------------------------------------

function readArchive(files: Map<string, Buffer>, source: string, keep: TensorFilter): Map<string, Tensor> {
  const pickles = [...files.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pickles.length !== 1) {
    throw new ModelLoadError("malformed_file", `${source}: a torch.save archive holds one <name>/data.pkl; found ${pickles.length}`);
  }
  const root = pickles[0].slice(0, -"data.pkl".length);
  const byteorder = files.get(`${root}byteorder`)?.toString("latin1");
  if (byteorder !== undefined && byteorder !== "little") {
    throw new ModelLoadError("unsupported_config", `${source}: byteorder '${byteorder}' is not supported (only little-endian)`);
  }
  const state = new Unpickler(files.get(pickles[0])!, source, (key) => files.get(`${root}data/${key}`)).run();
  if (!(state instanceof Dict)) {
    throw new ModelLoadError("unsupported_config", `${source}: holds ${describe(state)}, not a state dict (a dict of tensors)`);
  }
  if (state.size > MAX_TENSORS) {
    throw new ModelLoadError("malformed_file", `${source}: holds ${state.size} entries, more than the limit of ${MAX_TENSORS} tensors`);
  }
  const tensors = new Map<string, Tensor>();
  // Each storage's bytes hold its elements once; views of one storage (a transpose beside its
  // base) may read them again, but the floats decoded in all stay within this.
  let floatsLeft = Math.floor([...files].filter(([n]) => n.startsWith(`${root}data/`)).reduce((sum, [, b]) => sum + b.length, 0) / 2);
  for (const [name, value] of state.entries) {
    if (typeof name !== "string" || !(value instanceof TensorView)) {
      throw new ModelLoadError(
        "unsupported_config",
        `${source}: entry ${JSON.stringify(typeof name === "string" ? name : describe(name))} holds ${describe(value)}; a state dict maps names to tensors`,
      );
    }
    if (!value.storage.kind.float || !keep(name)) continue;
    floatsLeft -= value.numel;
    if (floatsLeft < 0) {
      throw new ModelLoadError("malformed_file", `${source}: its tensors read the same storage bytes over and over (at ${name}); a state dict's tensors hold at most one float per 2 bytes of its data`);
    }
    tensors.set(name, value.materialize(name, source));
  }
  return tensors;
}

// ---------------------------------------------------------------------------------------------
// The values a state dict's pickle builds
// ---------------------------------------------------------------------------------------------

/** Storage element types by the name of their torch.*Storage class; width 0: integer or boolean, skipped. */
const STORAGES: Record<string, { dtype: string; width: number; float: boolean }> = {
  FloatStorage: { dtype: "float32", width: 4, float: true },
  HalfStorage: { dtype: "float16", width: 2, float: true },
  BFloat16Storage: { dtype: "bfloat16", width: 2, float: true },
  DoubleStorage: { dtype: "float64", width: 8, float: true },
  LongStorage: { dtype: "int64", width: 8, float: false },
  IntStorage: { dtype: "int32", width: 4, float: false },
  ShortStorage: { dtype: "int16", width: 2, float: false },
  CharStorage: { dtype: "int8", width: 1, float: false },
  ByteStorage: { dtype: "uint8", width: 1, float: false },
  BoolStorage: { dtype: "bool", width: 1, float: false },
};

/** A global the file named and this reader implements. */
class Global {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
}

class Tuple {
  constructor(readonly items: readonly Value[]) {}
}

class Dict {
  // Made on first use: most dicts a pickle builds stay empty (the hooks of every tensor).
  private items: Map<Value, Value> | undefined;

  get entries(): Map<Value, Value> {
    this.items ??= new Map();
    return this.items;
  }

  get size(): number {
    return this.items?.size ?? 0;
  }
}

class Storage {
  constructor(
    readonly kind: (typeof STORAGES)[string],
    readonly bytes: Buffer,
    readonly numel: number,
  ) {}
}

class TensorView {
  constructor(
    readonly storage: Storage,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}

  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** Gathers the view's elements (a float tensor's) in row-major order. */
  materialize(name: string, source: string): Tensor {
    const { kind, bytes } = this.storage;
    const count = this.numel;
    const data = new Float32Array(count);
    if (kind.dtype === "float32" && this.isContiguous()) {
      new Uint8Array(data.buffer).set(bytes.subarray(4 * this.offset, 4 * (this.offset + count)));
    } else {
      const read = elementReader(kind.dtype, bytes);
      const index = new Array<number>(this.shape.length).fill(0);
      let at = this.offset;
      for (let i = 0; i < count; i++) {
        data[i] = read(at);
        // Odometer over the shape, last dimension fastest; `at` follows the strides.
        for (let dim = this.shape.length - 1; dim >= 0; dim--) {
          index[dim]++;
          at += this.stride[dim];
          if (index[dim] < this.shape[dim]) break;
          at -= this.stride[dim] * this.shape[dim];
          index[dim] = 0;
        }
      }
    }
    if (!data.every(Number.isFinite)) throw new ModelLoadError("non_finite_weights", `${source}: tensor ${name} contains NaN or Inf`);
    return { shape: [...this.shape], data };
  }

  private isContiguous(): boolean {
    let expected = 1;
    for (let dim = this.shape.length - 1; dim >= 0; dim--) {
      if (this.shape[dim] !== 1 && this.stride[dim] !== expected) return false;
      expected *= this.shape[dim];
    }
    return true;
  }
}

const MARK = Symbol("mark");
type Value = null | boolean | number | string | Global | Tuple | Dict | Storage | TensorView;

function describe(value: Value | typeof MARK | undefined): string {
  if (value === null) return "None";
  if (value instanceof Global) return `${value.module}.${value.name}`;
  if (value instanceof Tuple) return "a tuple";
  if (value instanceof Dict) return "a dict";
  if (value instanceof Storage) return "a bare storage";
  if (value instanceof TensorView) return "a tensor";
  return typeof value === "string" ? "a string" : `a ${typeof value}`;
}

function elementReader(dtype: string, bytes: Buffer): (i: number) => number {
  const scratch = new DataView(new ArrayBuffer(4));
  switch (dtype) {
    case "float32":
      return (i) => bytes.readFloatLE(4 * i);
    case "float64":
      return (i) => bytes.readDoubleLE(8 * i);
    case "bfloat16":
      return (i) => {
        scratch.setUint32(0, bytes.readUInt16LE(2 * i) << 16);
        return scratch.getFloat32(0);
      };
    default:
      return (i) => halfToFloat(bytes.readUInt16LE(2 * i));
  }
}

// ---------------------------------------------------------------------------------------------
// The interpreter
// ---------------------------------------------------------------------------------------------

const ALLOWED_GLOBALS = new Set(["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", ...Object.keys(STORAGES).map((s) => `torch.${s}`)]);

/** Opcodes of pickle protocols 2–4 that a state dict uses (names as in Python's pickletools). */
const OP = {
  PROTO: 0x80,
  FRAME: 0x95,
  STOP: 0x2e,
  MARK: 0x28,
  EMPTY_DICT: 0x7d,
  EMPTY_TUPLE: 0x29,
  TUPLE: 0x74,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  MEMOIZE: 0x94,
  BINGET: 0x68,
  LONG_BINGET: 0x6a,
  BINUNICODE: 0x58,
  SHORT_BINUNICODE: 0x8c,
  BININT: 0x4a,
  BININT1: 0x4b,
  BININT2: 0x4d,
  LONG1: 0x8a,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  NONE: 0x4e,
  GLOBAL: 0x63,
  STACK_GLOBAL: 0x93,
  REDUCE: 0x52,
  BINPERSID: 0x51,
  SETITEM: 0x73,
  SETITEMS: 0x75,
  BUILD: 0x62,
} as const;

/**
 * Values pushed or memoized in all: torch.save spends about 20 on each tensor (its name, storage
 * id, offset, shape, stride and call, most of them memoized), so a state dict of the most tensors
 * any reader here accepts takes a third of this. A pickle of one-byte opcodes (millions of
 * EMPTY_DICTs) is refused here, at a few tens of MB, instead of building one object per byte.
 */
const MAX_VALUES = MAX_TENSORS * 64;
/**
 * Values on the stack at once: Python's pickler sets dict items 1000 at a time (2000 values, a
 * tensor being built beside them), and a state dict nests no deeper.
 */
const MAX_STACK = 8192;

class Unpickler {
  private pos = 0;
  private stack: (Value | typeof MARK)[] = [];
  private readonly memo = new Map<number, Value>();
  private readonly storages = new Map<string, Storage>();
  private valuesLeft: number;

  constructor(
    private readonly bytes: Buffer,
    private readonly source: string,
    private readonly record: (key: string) => Buffer | undefined,
  ) {
    this.valuesLeft = MAX_VALUES;
  }

  /** Counts one more value against the file's budget. */
  private spend(): void {
    if (--this.valuesLeft < 0) {
      throw this.malformed(`builds more than ${MAX_VALUES} values, more than a state dict of ${MAX_TENSORS} tensors holds`);
    }
  }

  private push(value: Value | typeof MARK): void {
    this.spend();
    if (this.stack.length >= MAX_STACK) throw this.malformed(`more than ${MAX_STACK} values on the stack at once`);
    this.stack.push(value);
  }

  private remember(key: number): void {
    this.spend();
    this.memo.set(key, this.peek());
  }

  run(): Value {
    for (;;) {
      const at = this.pos;
      const op = this.u8();
      switch (op) {
        case OP.PROTO:
          this.u8();
          break;
        case OP.FRAME:
          this.take(8);
          break;
        case OP.STOP: {
          const top = this.pop();
          if (this.stack.length !== 0) throw this.malformed("values left on the stack at STOP");
          return top;
        }
        case OP.MARK:
          this.push(MARK);
          break;
        case OP.EMPTY_DICT:
          this.push(new Dict());
          break;
        case OP.EMPTY_TUPLE:
          this.push(new Tuple([]));
          break;
        case OP.TUPLE:
          this.push(new Tuple(this.popMark()));
          break;
        case OP.TUPLE1:
        case OP.TUPLE2:
        case OP.TUPLE3: {
          const n = op - OP.TUPLE1 + 1;
          const items = Array.from({ length: n }, () => this.pop()).reverse();
          this.push(new Tuple(items));
          break;
        }
        case OP.BINPUT:
          this.remember(this.u8());
          break;
        case OP.LONG_BINPUT:
          this.remember(this.u32());
          break;
        case OP.MEMOIZE:
          this.remember(this.memo.size);
          break;
        case OP.BINGET:
        case OP.LONG_BINGET: {
          const key = op === OP.BINGET ? this.u8() : this.u32();
          if (!this.memo.has(key)) throw this.malformed(`memo entry ${key} read before it was written`);
          this.push(this.memo.get(key)!);
          break;
        }
        case OP.BINUNICODE:
          this.push(this.take(this.u32()).toString("utf8"));
          break;
        case OP.SHORT_BINUNICODE:
          this.push(this.take(this.u8()).toString("utf8"));
          break;
        case OP.BININT:
          this.push(this.take(4).readInt32LE(0));
          break;
        case OP.BININT1:
          this.push(this.u8());
          break;
        case OP.BININT2:
          this.push(this.take(2).readUInt16LE(0));
          break;
        case OP.LONG1:
          this.push(this.long(this.take(this.u8())));
          break;
        case OP.NEWTRUE:
          this.push(true);
          break;
        case OP.NEWFALSE:
          this.push(false);
          break;
        case OP.NONE:
          this.push(null);
          break;
        case OP.GLOBAL:
          this.push(this.global(this.line(), this.line()));
          break;
        case OP.STACK_GLOBAL: {
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== "string" || typeof name !== "string") throw this.malformed("STACK_GLOBAL without two strings");
          this.push(this.global(module, name));
          break;
        }
        case OP.REDUCE: {
          const args = this.pop();
          const callable = this.pop();
          if (!(callable instanceof Global) || !(args instanceof Tuple)) throw this.malformed("REDUCE without a global and a tuple");
          this.push(this.call(callable, args.items));
          break;
        }
        case OP.BINPERSID:
          this.push(this.persistent(this.pop()));
          break;
        case OP.SETITEM: {
          const value = this.pop();
          const key = this.pop();
          this.dictOnTop().entries.set(key, value);
          break;
        }
        case OP.SETITEMS: {
          const items = this.popMark();
          if (items.length % 2 !== 0) throw this.malformed("SETITEMS with an odd number of items");
          const dict = this.dictOnTop();
          for (let i = 0; i < items.length; i += 2) dict.entries.set(items[i], items[i + 1]);
          break;
        }
        case OP.BUILD: {
          // nn.Module.state_dict() returns an OrderedDict carrying `_metadata` (module versions) as
          // instance state; the tensors do not depend on it.
          const state = this.pop();
          if (!(this.peek() instanceof Dict) || !(state instanceof Dict)) throw this.refuse("object state (BUILD) on something other than a dict");
          break;
        }
        default:
          throw this.refuse(`pickle opcode 0x${op.toString(16).padStart(2, "0")} at byte ${at}`);
      }
    }
  }

  private global(module: string, name: string): Global {
    const qualified = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(qualified)) {
      throw new ModelLoadError(
        "unsupported_config",
        `${this.source}: names the global ${qualified}, which a state dict of tensors does not use; refused without running anything (globals read: collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch.*Storage)`,
      );
    }
    return new Global(module, name);
  }

  private call(callable: Global, args: readonly Value[]): Value {
    if (callable.name === "OrderedDict" && args.length === 0) return new Dict();
    if (callable.name === "_rebuild_tensor_v2") return this.rebuildTensor(args);
    throw this.refuse(`a call of ${callable.module}.${callable.name} with ${args.length} argument(s)`);
  }

  /** _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks[, metadata]). */
  private rebuildTensor(args: readonly Value[]): TensorView {
    const [storage, offset, size, stride, requiresGrad, hooks, metadata] = args;
    const ints = (v: Value): v is Tuple => v instanceof Tuple && v.items.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0);
    const emptyDict = (v: Value | undefined) => v instanceof Dict && v.size === 0;
    if (
      !(storage instanceof Storage) ||
      typeof offset !== "number" ||
      !Number.isSafeInteger(offset) ||
      offset < 0 ||
      !ints(size) ||
      !ints(stride) ||
      size.items.length !== stride.items.length ||
      typeof requiresGrad !== "boolean" ||
      !emptyDict(hooks) ||
      args.length > 7 ||
      (args.length === 7 && !emptyDict(metadata) && metadata !== null)
    ) {
      throw this.refuse("a tensor rebuilt with arguments other than a plain tensor's (storage, offset, size, stride, requires_grad, no hooks)");
    }
    const shape = size.items as number[];
    const strides = stride.items as number[];
    if (shape.length > MAX_DIMS) throw this.refuse(`a tensor of ${shape.length} dimensions (at most ${MAX_DIMS} are read)`);
    const count = shape.reduce((a, b) => a * b, 1);
    const last = count === 0 ? -1 : offset + shape.reduce((s, n, i) => s + (n - 1) * strides[i], 0);
    // Parameters never overlap themselves, so a view larger than its storage is no state dict's.
    if (last >= storage.numel || count > storage.numel) {
      throw this.malformed(`a tensor of shape [${shape}] (offset ${offset}, strides [${strides}]) reaches outside its storage of ${storage.numel} elements`);
    }
    return new TensorView(storage, offset, shape, strides);
  }

  /** ('storage', torch.<Type>Storage, key, location, numel): the record <root>/data/<key>. */
  private persistent(pid: Value): Storage {
    if (!(pid instanceof Tuple) || pid.items[0] !== "storage" || pid.items.length !== 5) {
      throw this.refuse("a persistent id other than a tensor storage");
    }
    const [, type, key, , numel] = pid.items;
    if (!(type instanceof Global) || type.module !== "torch" || !(type.name in STORAGES)) throw this.refuse("a storage of an unknown type");
    if (typeof key !== "string" || typeof numel !== "number" || !Number.isSafeInteger(numel) || numel < 0) throw this.malformed("a malformed storage id");
    const cached = this.storages.get(key);
    if (cached) return cached;
    const kind = STORAGES[type.name];
    const bytes = this.record(key);
    if (!bytes) throw this.malformed(`storage ${key} has no data record`);
    if (bytes.length !== numel * kind.width) throw this.malformed(`storage ${key} holds ${bytes.length} bytes, not ${numel} × ${kind.width}`);
    const storage = new Storage(kind, bytes, numel);
    this.storages.set(key, storage);
    return storage;
  }

  private long(raw: Buffer): number {
    let v = 0n;
    for (let i = raw.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(raw[i]);
    if (raw.length > 0 && raw[raw.length - 1] & 0x80) v -= 1n << BigInt(8 * raw.length);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw this.malformed("an integer out of range");
    return Number(v);
  }

  private dictOnTop(): Dict {
    const top = this.peek();
    if (!(top instanceof Dict)) throw this.refuse("items set on something other than a dict");
    return top;
  }

  private popMark(): Value[] {
    const mark = this.stack.lastIndexOf(MARK);
    if (mark < 0) throw this.malformed("no MARK on the stack");
    const items = this.stack.splice(mark);
    return items.slice(1) as Value[];
  }

  private pop(): Value {
    const v = this.stack.pop();
    if (v === undefined || v === MARK) throw this.malformed("stack underflow");
    return v;
  }

  private peek(): Value {
    const v = this.stack[this.stack.length - 1];
    if (v === undefined || v === MARK) throw this.malformed("stack underflow");
    return v;
  }

  private take(n: number): Buffer {
    if (this.pos + n > this.bytes.length) throw this.malformed("data.pkl is truncated");
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  private u8(): number {
    return this.take(1)[0];
  }

  private u32(): number {
    return this.take(4).readUInt32LE(0);
  }

  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) throw this.malformed("data.pkl is truncated");
    const text = this.bytes.subarray(this.pos, end).toString("utf8");
    this.pos = end + 1;
    return text;
  }

  private refuse(what: string): ModelLoadError {
    return new ModelLoadError("unsupported_config", `${this.source}: holds ${what}; only a state dict of tensors is read`);
  }

  private malformed(what: string): ModelLoadError {
    return new ModelLoadError("malformed_file", `${this.source}: malformed pickle (${what})`);
  }
}
