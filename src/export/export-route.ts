import { existsSync } from "node:fs";
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import ort from "onnxruntime-node";
import { DEFAULT_MAX_SEQ_LEN } from "../config.js";
import { loadBackbone } from "../engine/backbone.js";
import { resolveInt8Mode, type Int8WeightChoice } from "../engine/int8-mode.js";
import type { Precision } from "../engine/products.js";
import { ModelLoadError, NotFoundError } from "../errors.js";
import { loadAdapter, loadFusion, type AdapterModule } from "../library/adapterhub.js";
import { readManifest } from "../library/manifest.js";
import { assembleRoute } from "../library/route.js";
import { buildRouteModel, EXPORT_INPUTS, EXPORT_OUTPUTS } from "./route-model.js";

export interface ExportOptions {
  /** The model library (library.json and its folders). */
  readonly library: string;
  readonly route: string;
  readonly out: string;
  readonly precision: Precision;
  /** int8 only: the weight range; 7-bit weights give exact integer products on every CPU (int8-mode.ts). */
  readonly int8Weights?: Int8WeightChoice;
  /** The longest input, recorded for tokenizing as the server does; default as the server's. */
  readonly maxSeqLen?: number;
}

/** What `route.json` says about an export; everything a client in another language needs. */
export interface ExportDescription {
  readonly route: string;
  readonly version: string;
  readonly kind: "fusion" | "adapter";
  readonly adapters: readonly string[];
  readonly fusion: "dynamic" | "static" | null;
  readonly backbone: { readonly model_type: string; readonly hidden_size: number; readonly layers: number };
  readonly precision: string;
  readonly head_type: string;
  readonly labels: readonly string[];
  readonly max_length: number;
  readonly truncation: string;
  readonly padding: string;
  readonly inputs: readonly { readonly name: string; readonly dtype: string; readonly shape: readonly (string | number)[] }[];
  readonly outputs: readonly { readonly name: string; readonly dtype: string; readonly shape: readonly (string | number)[] }[];
  readonly files: { readonly model: string; readonly tokenizer: string };
}

export const EXPORT_FILES = { model: "model.onnx", tokenizer: "tokenizer.json", description: "route.json" } as const;

/**
 * Writes one route of a library as a standalone model: model.onnx (route-model.ts), the
 * backbone's tokenizer.json (and tokenizer_config.json where there is one), and route.json. Reads
 * the library and changes nothing in it.
 */
export async function exportRoute(options: ExportOptions): Promise<ExportDescription> {
  const manifest = await readManifest(options.library);
  const backboneDir = resolve(options.library, manifest.backbone);
  const backbone = await loadBackbone(backboneDir);
  const { config } = backbone;
  const adapter = (name: string): Promise<AdapterModule> => {
    const version = manifest.adapters[name];
    if (version === undefined) throw new ModelLoadError("unknown_adapter", `fusion '${options.route}' fuses adapter '${name}', which is not in the library`);
    return loadAdapter(join(options.library, "adapters", name, version), config, name);
  };

  let route;
  const fusionVersion = manifest.fusions[options.route];
  const adapterVersion = manifest.adapters[options.route];
  if (fusionVersion !== undefined) {
    const fusion = await loadFusion(join(options.library, "fusions", options.route, fusionVersion), config, options.route);
    route = assembleRoute(options.route, await Promise.all(fusion.adapters.map(adapter)), fusion, fusion.head);
  } else if (adapterVersion !== undefined) {
    const module = await adapter(options.route);
    if (!module.head) throw new ModelLoadError("missing_file", `adapter '${options.route}' has no prediction head, so it is not a route`);
    route = assembleRoute(options.route, [module], null, module.head);
  } else {
    throw new NotFoundError("route", options.route);
  }

  const maxSeqLen = options.maxSeqLen ?? Math.min(DEFAULT_MAX_SEQ_LEN, config.maxPositions);
  if (maxSeqLen < 2 || maxSeqLen > config.maxPositions) {
    throw new ModelLoadError("unsupported_config", `maximum sequence length ${maxSeqLen} is outside 2..${config.maxPositions} (the backbone's positions)`);
  }
  const int8 = options.precision === "int8" ? await resolveInt8Mode(options.int8Weights ?? "7") : undefined;
  const model = await buildRouteModel(backbone, { name: route.name, adapters: route.adapters, fusion: route.fusion, head: route.head }, int8);
  await checkLoads(model);

  const labels = route.head.labels;
  const rows = route.head.type === "tagging" ? ["batch", "sequence", labels.length] : ["batch", labels.length];
  const description: ExportDescription = {
    route: route.name,
    version: route.version,
    kind: route.kind,
    adapters: route.adapters.map((a) => a.name),
    fusion: route.fusion?.kind ?? null,
    backbone: { model_type: config.modelType, hidden_size: config.hiddenSize, layers: config.numLayers },
    precision: int8 ? `int8 (${int8.weightBits}-bit weights)` : "float32",
    head_type: route.head.type,
    labels,
    max_length: maxSeqLen,
    truncation:
      "encode with tokenizer.json's model and special tokens but without any padding or truncation it sets; " +
      "a text of more than max_length tokens then keeps its first max_length − 1 tokens and its last (the closing special token)",
    padding: "pad with any token id where attention_mask is 0",
    inputs: EXPORT_INPUTS.map((name) => ({ name, dtype: "int64", shape: ["batch", "sequence"] })),
    outputs: [
      { name: EXPORT_OUTPUTS.logits, dtype: "float32", shape: rows },
      { name: EXPORT_OUTPUTS.probabilities, dtype: "float32", shape: rows },
      ...(route.fusion ? [{ name: EXPORT_OUTPUTS.fusionWeights, dtype: "float32", shape: ["batch", config.numLayers, route.adapters.length] }] : []),
    ],
    files: { model: EXPORT_FILES.model, tokenizer: EXPORT_FILES.tokenizer },
  };

  await mkdir(options.out, { recursive: true });
  await writeFile(join(options.out, EXPORT_FILES.model), model);
  await copyFile(join(backboneDir, "tokenizer.json"), join(options.out, EXPORT_FILES.tokenizer));
  if (existsSync(join(backboneDir, "tokenizer_config.json"))) await copyFile(join(backboneDir, "tokenizer_config.json"), join(options.out, "tokenizer_config.json"));
  await writeFile(join(options.out, EXPORT_FILES.description), `${JSON.stringify(description, null, 2)}\n`);
  return description;
}

/** ONNX Runtime loads the model, and it asks for nothing but the token ids and the mask. */
async function checkLoads(model: Uint8Array): Promise<void> {
  const session = await ort.InferenceSession.create(model, { executionProviders: ["cpu"], graphOptimizationLevel: "all", intraOpNumThreads: 1 });
  try {
    if (session.inputNames.join() !== EXPORT_INPUTS.join()) throw new Error(`the exported graph still takes inputs ${session.inputNames.join(", ")}`);
  } finally {
    await session.release();
  }
}
