import { ProtoMessage } from "./protobuf.js";

/** ONNX TensorProto.DataType values used here. */
export const FLOAT = 1;
export const UINT8 = 2;
export const INT8 = 3;
export const INT32 = 6;
export const INT64 = 7;

export type AttributeValue = number | { float: number } | number[] | string | { graph: ProtoMessage };
export type Dim = number | string;

/** A value given to a graph input in advance (engine/layout.ts's FeedTensor has this shape). */
export interface FixedValue {
  readonly type: "float32" | "int8";
  readonly dims: readonly number[];
  readonly data: Float32Array | Int8Array;
}

const MS_DOMAIN = "com.microsoft";

/**
 * Builds one ONNX ModelProto in memory. Field numbers follow onnx.proto (IR version 8).
 * Node outputs get unique generated names unless given, so graph code reads like dataflow.
 */
export class OnnxGraph {
  private nodes: ProtoMessage[] = [];
  private readonly initializers: ProtoMessage[] = [];
  private readonly inputs: ProtoMessage[] = [];
  private readonly outputs: ProtoMessage[] = [];
  private counter = 0;
  private readonly defined = new Map<string, string>();

  /**
   * `fixed`: inputs whose values are known when the graph is built. Asking for one of them as an
   * input gives an initializer holding its value instead, so the same graph code builds both a
   * graph that takes those values at run time and one that holds them.
   */
  constructor(private readonly fixed: Readonly<Record<string, FixedValue>> = {}) {}

  input(name: string, elemType: number, dims: Dim[]): string {
    const value = this.fixed[name];
    if (value) {
      if (elemType !== (value.type === "int8" ? INT8 : FLOAT) || value.dims.length !== dims.length) {
        throw new Error(`fixed input ${name}: [${value.dims}] ${value.type} does not fit the graph's input`);
      }
      return value.data instanceof Int8Array ? this.int8s(name, value.dims, value.data) : this.floats(name, value.dims, value.data);
    }
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: number, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** A float32 initializer; the data is referenced, not copied, until the model is serialized. */
  floats(name: string, dims: readonly number[], data: Float32Array): string {
    return this.raw(name, FLOAT, dims, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  /** An int8 initializer (quantized weights). */
  int8s(name: string, dims: readonly number[], data: Int8Array): string {
    return this.raw(name, INT8, dims, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  uint8s(name: string, dims: readonly number[], data: Uint8Array): string {
    return this.raw(name, UINT8, dims, data);
  }

  /** A name defined once however often it is asked for: constants that many nodes share. */
  shared(name: string, define: () => string): string {
    if (!this.defined.has(name)) this.defined.set(name, define());
    return this.defined.get(name)!;
  }

  private raw(name: string, elemType: number, dims: readonly number[], bytes: Uint8Array): string {
    const t = new ProtoMessage();
    for (const d of dims) t.int(1, d);
    t.int(2, elemType).string(8, name);
    t.bytes(9, bytes);
    this.initializers.push(t);
    return name;
  }

  /** An int64 initializer, 1-D unless `dims` says otherwise ([] for a scalar). */
  ints(name: string, values: readonly number[], dims: readonly number[] = [values.length]): string {
    const t = new ProtoMessage();
    for (const d of dims) t.int(1, d);
    t.int(2, INT64).string(8, name);
    const raw = new BigInt64Array(values.map((v) => BigInt(v)));
    t.bytes(9, new Uint8Array(raw.buffer));
    this.initializers.push(t);
    return name;
  }

  /** Adds a node and returns its output names. */
  node(
    opType: string,
    inputs: string[],
    attributes: Record<string, AttributeValue> = {},
    options: { outputs?: number | string[]; domain?: "ms" } = {},
  ): string[] {
    const outs =
      Array.isArray(options.outputs)
        ? options.outputs
        : Array.from({ length: options.outputs ?? 1 }, () => `${opType.toLowerCase()}_${this.counter++}`);
    const n = new ProtoMessage();
    for (const i of inputs) n.string(1, i);
    for (const o of outs) n.string(2, o);
    n.string(3, `${opType}_${this.counter++}`).string(4, opType);
    for (const [key, value] of Object.entries(attributes)) n.message(5, attribute(key, value));
    if (options.domain === "ms") n.string(7, MS_DOMAIN);
    this.nodes.push(n);
    return outs;
  }

  /** A single-output node. */
  op(opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, domain?: "ms"): string {
    return this.node(opType, inputs, attributes, { domain })[0];
  }

  /**
   * A subgraph (the branch of an If): the nodes `build` adds go into it rather than into this graph,
   * and its outputs are the names `build` returns. It may read any value of this graph; the
   * initializers and inputs `build` asks for are this graph's.
   */
  subgraph(name: string, build: () => readonly string[]): { graph: ProtoMessage } {
    const outer = this.nodes;
    this.nodes = [];
    let outputs: readonly string[];
    let inner: ProtoMessage[];
    try {
      outputs = build();
    } finally {
      inner = this.nodes;
      this.nodes = outer;
    }
    const g = new ProtoMessage();
    for (const n of inner) g.message(1, n);
    g.string(2, name);
    // A branch's outputs are float tensors of any shape; ONNX Runtime infers the rest.
    for (const o of outputs) g.message(12, new ProtoMessage().string(1, o).message(2, new ProtoMessage().message(1, new ProtoMessage().int(1, FLOAT))));
    return { graph: g };
  }

  toBytes(name: string): Uint8Array {
    const g = new ProtoMessage();
    for (const n of this.nodes) g.message(1, n);
    g.string(2, name);
    for (const t of this.initializers) g.message(5, t);
    for (const i of this.inputs) g.message(11, i);
    for (const o of this.outputs) g.message(12, o);
    const model = new ProtoMessage().int(1, 8).string(2, "fusion-serve");
    model.message(7, g);
    model.message(8, new ProtoMessage().string(1, "").int(2, 17));
    model.message(8, new ProtoMessage().string(1, MS_DOMAIN).int(2, 1));
    return model.toBytes();
  }
}

function valueInfo(name: string, elemType: number, dims: Dim[]): ProtoMessage {
  const shape = new ProtoMessage();
  for (const d of dims) {
    const dim = new ProtoMessage();
    if (typeof d === "number") dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoMessage().int(1, elemType).message(2, shape);
  return new ProtoMessage().string(1, name).message(2, new ProtoMessage().message(1, tensorType));
}

function attribute(name: string, value: AttributeValue): ProtoMessage {
  const a = new ProtoMessage().string(1, name);
  if (typeof value === "number") return a.int(3, value).int(20, 2);
  if (typeof value === "string") return a.string(4, value).int(20, 3);
  if (Array.isArray(value)) {
    for (const v of value) a.int(8, v);
    return a.int(20, 7);
  }
  if ("graph" in value) return a.message(6, value.graph).int(20, 5);
  return a.float(2, value.float).int(20, 1);
}
