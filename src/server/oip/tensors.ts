import { BadRequestError } from "../../errors.js";

/**
 * Tensors of the Open Inference Protocol (v2, REST) as this server reads and writes them: JSON
 * `data`, or the binary tensor extension, where the JSON header is followed by each tensor's
 * bytes (`Inference-Header-Content-Length` says where the header ends; a tensor's
 * `parameters.binary_data_size`, how many bytes are its own). BYTES elements are each a 4-byte
 * little-endian length and that many bytes; FP32 elements are little-endian floats.
 */

export type Datatype = "BYTES" | "FP32";

/** A tensor as a request or an answer carries it in JSON. */
export interface WireTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly datatype: string;
  readonly parameters?: { readonly binary_data_size?: number; readonly binary_data?: boolean };
  readonly data?: unknown;
}

/** An answer's tensor before it is written: flat row-major values. */
export interface OutputTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly datatype: Datatype;
  readonly values: readonly (number | string)[];
}

export const elementCount = (shape: readonly number[]): number => shape.reduce((n, d) => n * d, 1);

/** The strings of the one BYTES input, from its JSON data or from the binary part of the body. */
export function readTexts(tensor: WireTensor, binary: Buffer | undefined): string[] {
  const count = elementCount(tensor.shape);
  const size = tensor.parameters?.binary_data_size;
  if (size !== undefined) {
    if (!binary || size > binary.length) throw new BadRequestError("invalid_request", `input '${tensor.name}': binary_data_size ${size} exceeds the binary data sent`);
    return decodeBytes(binary.subarray(0, size), count, tensor.name);
  }
  if (tensor.data === undefined) throw new BadRequestError("invalid_request", `input '${tensor.name}' has neither data nor parameters.binary_data_size`);
  const flat = [tensor.data].flat(Infinity as 1);
  if (flat.length !== count) throw new BadRequestError("invalid_request", `input '${tensor.name}': shape [${tensor.shape.join(", ")}] holds ${count} elements, data has ${flat.length}`);
  if (!flat.every((v): v is string => typeof v === "string")) throw new BadRequestError("invalid_request", `input '${tensor.name}': BYTES data must be strings`);
  return flat;
}

function decodeBytes(bytes: Buffer, count: number, name: string): string[] {
  const texts: string[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + 4 > bytes.length) throw new BadRequestError("invalid_request", `input '${name}': a BYTES element's length is cut off`);
    const length = bytes.readUInt32LE(at);
    at += 4;
    if (at + length > bytes.length) throw new BadRequestError("invalid_request", `input '${name}': a BYTES element is longer than the data sent`);
    texts.push(bytes.toString("utf8", at, at + length));
    at += length;
  }
  if (texts.length !== count) throw new BadRequestError("invalid_request", `input '${name}': its shape holds ${count} elements, the binary data ${texts.length}`);
  return texts;
}

function encode(tensor: OutputTensor): Buffer {
  if (tensor.datatype === "FP32") {
    const out = Buffer.alloc(tensor.values.length * 4);
    tensor.values.forEach((v, i) => out.writeFloatLE(v as number, i * 4));
    return out;
  }
  const parts = tensor.values.map((v) => Buffer.from(String(v), "utf8"));
  const out = Buffer.alloc(parts.reduce((n, p) => n + 4 + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.writeUInt32LE(part.length, at);
    part.copy(out, at + 4);
    at += 4 + part.length;
  }
  return out;
}

/**
 * The answer's body: all JSON when no tensor is asked for in binary, else the JSON header with
 * those tensors' sizes, followed by their bytes in output order.
 */
export function writeAnswer(header: Record<string, unknown>, outputs: readonly OutputTensor[], binary: (name: string) => boolean): { json: object } | { body: Buffer; headerLength: number } {
  const chunks: Buffer[] = [];
  const wire = outputs.map((tensor) => {
    const { name, shape, datatype, values } = tensor;
    if (!binary(name)) return { name, shape, datatype, data: values };
    const bytes = encode(tensor);
    chunks.push(bytes);
    return { name, shape, datatype, parameters: { binary_data_size: bytes.length } };
  });
  const json = { ...header, outputs: wire };
  if (chunks.length === 0) return { json };
  const head = Buffer.from(JSON.stringify(json), "utf8");
  return { body: Buffer.concat([head, ...chunks]), headerLength: head.length };
}
