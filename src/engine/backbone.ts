import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ModelLoadError } from "../errors.js";
import { readSafetensors, type Tensor } from "../formats/safetensors.js";
import { transpose } from "./linalg.js";

export type ModelType = "bert" | "roberta" | "xlm-roberta" | "distilbert";

export interface BackboneConfig {
  readonly modelType: ModelType;
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly intermediateSize: number;
  /** The longest input, in tokens, the position table serves. */
  readonly maxPositions: number;
  readonly vocabSize: number;
  readonly layerNormEps: number;
  /**
   * RoBERTa's position ids: real tokens count up from paddingIdx + 1 and padding tokens (any id
   * equal to it) sit at paddingIdx itself. Absent: positions 0 … T−1, as BERT numbers them.
   */
  readonly positionPaddingIdx?: number;
}

/**
 * What differs between the encoder families the graph serves. All of them are post-LayerNorm
 * encoders with the same layer (self-attention, residual LayerNorm, GELU FFN, residual LayerNorm),
 * and AdapterHub inserts the `seq_bn` output adapter and the fusion at the same point of each:
 * after the FFN, with the FFN output, its residual and the layer's second LayerNorm
 * (BertOutput in BERT and RoBERTa, `output_adapters(ffn_output, sa_output, output_layer_norm)` in
 * DistilBERT's TransformerBlock). Only names, embeddings and config fields differ.
 */
interface Family {
  /** Prefix of the backbone's tensors in checkpoints saved from a task model (`bert.`). */
  readonly prefix: string;
  readonly config: { readonly hidden: string; readonly layers: string; readonly heads: string; readonly intermediate: string; readonly activation: string };
  /** Set when the family's LayerNorms ignore config.json (DistilBERT's are hard-coded). */
  readonly fixedLayerNormEps?: number;
  readonly tokenTypes: boolean;
  readonly positions: "arange" | "after-padding";
  /** Module path of layer l, and of its parts, in the checkpoint. */
  readonly layer: string;
  readonly parts: {
    readonly query: string;
    readonly key: string;
    readonly value: string;
    readonly attentionOut: string;
    readonly attentionNorm: string;
    readonly intermediate: string;
    readonly output: string;
    readonly outputNorm: string;
  };
  /** The module under the layer that holds AdapterHub's output adapters and fusion layers. */
  readonly adapterSite: string;
}

const BERT_LAYER = {
  layer: "encoder.layer",
  parts: {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attentionOut: "attention.output.dense",
    attentionNorm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    outputNorm: "output.LayerNorm",
  },
  adapterSite: "output",
};
const BERT_CONFIG = { hidden: "hidden_size", layers: "num_hidden_layers", heads: "num_attention_heads", intermediate: "intermediate_size", activation: "hidden_act" };
const ROBERTA: Family = { prefix: "roberta.", config: BERT_CONFIG, tokenTypes: true, positions: "after-padding", ...BERT_LAYER };

const FAMILIES: Record<ModelType, Family> = {
  bert: { prefix: "bert.", config: BERT_CONFIG, tokenTypes: true, positions: "arange", ...BERT_LAYER },
  roberta: ROBERTA,
  "xlm-roberta": ROBERTA,
  distilbert: {
    prefix: "distilbert.",
    config: { hidden: "dim", layers: "n_layers", heads: "n_heads", intermediate: "hidden_dim", activation: "activation" },
    fixedLayerNormEps: 1e-12,
    tokenTypes: false,
    positions: "arange",
    layer: "transformer.layer",
    parts: {
      query: "attention.q_lin",
      key: "attention.k_lin",
      value: "attention.v_lin",
      attentionOut: "attention.out_lin",
      attentionNorm: "sa_layer_norm",
      intermediate: "ffn.lin1",
      output: "ffn.lin2",
      outputNorm: "output_layer_norm",
    },
    adapterSite: "output_adapters",
  },
};

export const SUPPORTED_MODEL_TYPES = Object.keys(FAMILIES) as ModelType[];

/**
 * Where AdapterHub saves a layer's output adapters and fusion layers for this backbone:
 * `<layer path>.<l>.<site>.adapters.<name>.…`, `….<site>.adapter_fusion_layer.<name>.…`.
 */
export function adapterSite(modelType: ModelType): { readonly layer: string; readonly site: string } {
  const family = FAMILIES[modelType];
  return { layer: family.layer, site: family.adapterSite };
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
  /** Token type 0's embedding; null for families without token types. */
  readonly tokenTypeRow: Tensor | null;
  readonly embeddingNormGamma: Tensor;
  readonly embeddingNormBeta: Tensor;
  readonly layers: readonly EncoderLayerWeights[];
}

/** Reads and validates config.json: fails on any architecture or setting the graph does not reproduce. */
export function parseBackboneConfig(raw: Record<string, unknown>, source: string): BackboneConfig {
  const modelType = String(raw.model_type) as ModelType;
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
  const family = FAMILIES[modelType];
  requireValue(family.config.activation, ["gelu"], "gelu");
  requireValue("position_embedding_type", ["absolute"], "absolute");
  requireValue("is_decoder", [false], false);
  const positive = (field: string): number => {
    const value = raw[field];
    if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
      throw new ModelLoadError("unsupported_config", `${source}: ${field} must be a positive integer, got ${String(value)}`);
    }
    return value;
  };
  const tableSize = positive("max_position_embeddings");
  let positions: Pick<BackboneConfig, "maxPositions" | "positionPaddingIdx"> = { maxPositions: tableSize };
  if (family.positions === "after-padding") {
    const paddingIdx = raw.pad_token_id ?? 1;
    if (typeof paddingIdx !== "number" || !Number.isInteger(paddingIdx) || paddingIdx < 0 || paddingIdx >= tableSize - 1) {
      throw new ModelLoadError("unsupported_config", `${source}: pad_token_id ${String(paddingIdx)} leaves no positions below max_position_embeddings ${tableSize}`);
    }
    positions = { maxPositions: tableSize - paddingIdx - 1, positionPaddingIdx: paddingIdx };
  }
  const config: BackboneConfig = {
    modelType,
    hiddenSize: positive(family.config.hidden),
    numLayers: positive(family.config.layers),
    numHeads: positive(family.config.heads),
    intermediateSize: positive(family.config.intermediate),
    ...positions,
    vocabSize: positive("vocab_size"),
    layerNormEps: family.fixedLayerNormEps ?? (typeof raw.layer_norm_eps === "number" ? raw.layer_norm_eps : 1e-12),
  };
  if (config.hiddenSize % config.numHeads !== 0) {
    throw new ModelLoadError(
      "unsupported_config",
      `${source}: ${family.config.hidden} ${config.hiddenSize} is not a multiple of ${family.config.heads} ${config.numHeads}`,
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

/** Loads a Hugging Face checkpoint folder (config.json + model.safetensors) of one of the FAMILIES. */
export async function loadBackbone(dir: string): Promise<Backbone> {
  const config = parseBackboneConfig(await readJson(join(dir, "config.json")), join(dir, "config.json"));
  const family = FAMILIES[config.modelType];
  const file = join(dir, "model.safetensors");
  const raw = await readSafetensors(file);
  const tensors = new Map<string, Tensor>();
  for (const [name, t] of raw) tensors.set(name.startsWith(family.prefix) ? name.slice(family.prefix.length) : name, t);

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
  const { parts } = family;
  for (let l = 0; l < config.numLayers; l++) {
    const p = `${family.layer}.${l}`;
    const q = linear(`${p}.${parts.query}`, d, d);
    const k = linear(`${p}.${parts.key}`, d, d);
    const v = linear(`${p}.${parts.value}`, d, d);
    const ao = linear(`${p}.${parts.attentionOut}`, d, d);
    const inter = linear(`${p}.${parts.intermediate}`, d, config.intermediateSize);
    const out = linear(`${p}.${parts.output}`, config.intermediateSize, d);
    layers.push({
      qkvWeight: concatColumns([q.weight, k.weight, v.weight]),
      qkvBias: { shape: [3 * d], data: Float32Array.from([...q.bias.data, ...k.bias.data, ...v.bias.data]) },
      attentionOutWeight: ao.weight,
      attentionOutBias: ao.bias,
      attentionNormGamma: take(`${p}.${parts.attentionNorm}.weight`, [d]),
      attentionNormBeta: take(`${p}.${parts.attentionNorm}.bias`, [d]),
      intermediateWeight: inter.weight,
      intermediateBias: inter.bias,
      outputWeight: out.weight,
      outputBias: out.bias,
      outputNormGamma: take(`${p}.${parts.outputNorm}.weight`, [d]),
      outputNormBeta: take(`${p}.${parts.outputNorm}.bias`, [d]),
    });
  }
  const tokenTypes = family.tokenTypes ? tensors.get("embeddings.token_type_embeddings.weight") : undefined;
  const tableSize = config.maxPositions + (config.positionPaddingIdx === undefined ? 0 : config.positionPaddingIdx + 1);
  return {
    dir,
    config,
    wordEmbeddings: take("embeddings.word_embeddings.weight", [config.vocabSize, d]),
    positionEmbeddings: take("embeddings.position_embeddings.weight", [tableSize, d]),
    // Single-sequence inputs always have token type 0, so only that row is ever used.
    tokenTypeRow: tokenTypes ? { shape: [d], data: tokenTypes.data.slice(0, d) } : null,
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
