import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ModelLoadError } from "../errors.js";
import { readSafetensors, type Tensor } from "./safetensors.js";
import { transpose } from "./linalg.js";

export interface BackboneConfig {
  readonly modelType: "bert";
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly intermediateSize: number;
  readonly maxPositions: number;
  readonly vocabSize: number;
  readonly layerNormEps: number;
}

/** One encoder layer, with matrices already laid out [in, out] for MatMul. */
export interface EncoderLayerWeights {
  readonly qkvWeight: Tensor;
  readonly qkvBias: Tensor;
  readonly attentionOutWeight: Tensor;
  readonly attentionOutBias: Tensor;
  readonly attentionNormGamma: Tensor;
  readonly attentionNormBeta: Tensor;
  readonly intermediateWeight: Tensor;
  readonly intermediateBias: Tensor;
  readonly outputWeight: Tensor;
  readonly outputBias: Tensor;
  readonly outputNormGamma: Tensor;
  readonly outputNormBeta: Tensor;
}

export interface Backbone {
  readonly dir: string;
  readonly config: BackboneConfig;
  readonly wordEmbeddings: Tensor;
  readonly positionEmbeddings: Tensor;
  readonly tokenTypeRow: Tensor;
  readonly embeddingNormGamma: Tensor;
  readonly embeddingNormBeta: Tensor;
  readonly layers: readonly EncoderLayerWeights[];
}

const SUPPORTED_MODEL_TYPES = ["bert"];

/** Reads and validates config.json: fails on any architecture or setting the graph does not reproduce. */
export function parseBackboneConfig(raw: Record<string, unknown>, source: string): BackboneConfig {
  const modelType = String(raw.model_type);
  if (!SUPPORTED_MODEL_TYPES.includes(modelType)) {
    throw new ModelLoadError(
      "unsupported_config",
      `${source}: model_type '${modelType}' is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(", ")})`,
    );
  }
  const requireValue = (field: string, allowed: unknown[], fallback: unknown) => {
    const value = raw[field] ?? fallback;
    if (!allowed.includes(value)) {
      throw new ModelLoadError(
        "unsupported_config",
        `${source}: ${field} '${String(value)}' is not supported (supported: ${allowed.join(", ")})`,
      );
    }
  };
  requireValue("hidden_act", ["gelu"], "gelu");
  requireValue("position_embedding_type", ["absolute"], "absolute");
  requireValue("is_decoder", [false], false);
  const positive = (field: string): number => {
    const value = raw[field];
    if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
      throw new ModelLoadError("unsupported_config", `${source}: ${field} must be a positive integer, got ${String(value)}`);
    }
    return value;
  };
  const config: BackboneConfig = {
    modelType: "bert",
    hiddenSize: positive("hidden_size"),
    numLayers: positive("num_hidden_layers"),
    numHeads: positive("num_attention_heads"),
    intermediateSize: positive("intermediate_size"),
    maxPositions: positive("max_position_embeddings"),
    vocabSize: positive("vocab_size"),
    layerNormEps: typeof raw.layer_norm_eps === "number" ? raw.layer_norm_eps : 1e-12,
  };
  if (config.hiddenSize % config.numHeads !== 0) {
    throw new ModelLoadError(
      "unsupported_config",
      `${source}: hidden_size ${config.hiddenSize} is not a multiple of num_attention_heads ${config.numHeads}`,
    );
  }
  return config;
}

export async function readJson(path: string): Promise<Record<string, unknown>> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch {
    throw new ModelLoadError("missing_file", `cannot read ${path}`);
  }
  return parseJsonObject(bytes, path);
}

/** A JSON object or a ModelLoadError naming the file. */
export function parseJsonObject(bytes: Buffer, path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new ModelLoadError("malformed_file", `${path} is not valid JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ModelLoadError("malformed_file", `${path} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** Loads a Hugging Face checkpoint folder (config.json + model.safetensors) of the BERT family. */
export async function loadBackbone(dir: string): Promise<Backbone> {
  const config = parseBackboneConfig(await readJson(join(dir, "config.json")), join(dir, "config.json"));
  const file = join(dir, "model.safetensors");
  const raw = await readSafetensors(file);
  const tensors = new Map<string, Tensor>();
  for (const [name, t] of raw) tensors.set(name.replace(/^bert\./, ""), t);

  const d = config.hiddenSize;
  const take = (name: string, shape: number[]): Tensor => {
    const t = tensors.get(name);
    if (!t) throw new ModelLoadError("malformed_file", `${file}: tensor ${name} is missing`);
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
      throw new ModelLoadError(
        "shape_mismatch",
        `${file}: tensor ${name} has shape [${t.shape}], config.json implies [${shape}]`,
      );
    }
    return t;
  };
  const linear = (prefix: string, inDim: number, outDim: number) => ({
    weight: transpose(take(`${prefix}.weight`, [outDim, inDim])),
    bias: take(`${prefix}.bias`, [outDim]),
  });

  const layers: EncoderLayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `encoder.layer.${l}`;
    const q = linear(`${p}.attention.self.query`, d, d);
    const k = linear(`${p}.attention.self.key`, d, d);
    const v = linear(`${p}.attention.self.value`, d, d);
    const ao = linear(`${p}.attention.output.dense`, d, d);
    const inter = linear(`${p}.intermediate.dense`, d, config.intermediateSize);
    const out = linear(`${p}.output.dense`, config.intermediateSize, d);
    layers.push({
      qkvWeight: concatColumns([q.weight, k.weight, v.weight]),
      qkvBias: { shape: [3 * d], data: Float32Array.from([...q.bias.data, ...k.bias.data, ...v.bias.data]) },
      attentionOutWeight: ao.weight,
      attentionOutBias: ao.bias,
      attentionNormGamma: take(`${p}.attention.output.LayerNorm.weight`, [d]),
      attentionNormBeta: take(`${p}.attention.output.LayerNorm.bias`, [d]),
      intermediateWeight: inter.weight,
      intermediateBias: inter.bias,
      outputWeight: out.weight,
      outputBias: out.bias,
      outputNormGamma: take(`${p}.output.LayerNorm.weight`, [d]),
      outputNormBeta: take(`${p}.output.LayerNorm.bias`, [d]),
    });
  }
  const tokenTypes = tensors.get("embeddings.token_type_embeddings.weight");
  return {
    dir,
    config,
    wordEmbeddings: take("embeddings.word_embeddings.weight", [config.vocabSize, d]),
    positionEmbeddings: take("embeddings.position_embeddings.weight", [config.maxPositions, d]),
    // Single-sequence inputs always have token type 0, so only that row is ever used.
    tokenTypeRow: { shape: [d], data: tokenTypes ? tokenTypes.data.slice(0, d) : new Float32Array(d) },
    embeddingNormGamma: take("embeddings.LayerNorm.weight", [d]),
    embeddingNormBeta: take("embeddings.LayerNorm.bias", [d]),
    layers,
  };
}

/** [rows, a] ⧺ [rows, b] ⧺ … → [rows, a + b + …] */
function concatColumns(parts: Tensor[]): Tensor {
  const rows = parts[0].shape[0];
  const widths = parts.map((p) => p.shape[1]);
  const total = widths.reduce((a, b) => a + b, 0);
  const data = new Float32Array(rows * total);
  for (let r = 0; r < rows; r++) {
    let offset = r * total;
    parts.forEach((p, i) => {
      data.set(p.data.subarray(r * widths[i], (r + 1) * widths[i]), offset);
      offset += widths[i];
    });
  }
  return { shape: [rows, total], data };
}
