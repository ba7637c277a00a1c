import { createHash } from "node:crypto";
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ModelLoadError } from "../errors.js";
import { adapterSite, parseJsonObject, type BackboneConfig } from "../engine/backbone.js";
import type { Activation, HeadType, PredictionHead } from "../engine/heads.js";
import { folderOfThisThread, type FusionFolder, type ScoreMatrix } from "../engine/fold.js";
import { transpose } from "../engine/linalg.js";
import type { AdapterLayer, AdapterWeights, FusionLayer, FusionWeights, SavedFusionLayer } from "../engine/weights.js";
import { parseSafetensors, type Tensor, type TensorFilter } from "../formats/safetensors.js";
import { parseTorchSave } from "../formats/torch-pickle.js";

/**
 * Readers for AdapterHub save directories (`save_adapter`, `save_adapter_fusion`), validated
 * completely against the backbone before anything is returned: a caller either gets a module
 * that can be served as is, or a ModelLoadError naming the file and field at fault.
 *
 * Tensors are selected as the `adapters` library loads them: by the exact name of the module the
 * config names. Its save filters by name prefix (heads, fusions), so a save file may also hold
 * other modules' tensors (the heads of `xy` in the head file of `x`, fusion `x,y,z` in the file
 * of `x,y`); those are left alone. A module loads under any name (`load_as`), whatever name it
 * was saved under.
 */

export interface AdapterModule extends AdapterWeights {
  /** The name it is served under, whatever name it was saved under. */
  readonly name: string;
  readonly version: string;
  readonly dir: string;
  readonly sizeBytes: number;
  readonly head: PredictionHead | null;
}

export interface FusionModule<Layer extends FusionLayer = FusionLayer> extends FusionWeights<Layer> {
  readonly name: string;
  readonly version: string;
  readonly dir: string;
  readonly sizeBytes: number;
  /**
   * The fused adapters in fusion order, by the names they are served under: the config's
   * `adapter_names`, or its comma-separated `name` in saves that predate that field.
   */
  readonly adapters: readonly string[];
  readonly head: PredictionHead;
}

interface LoadedFiles {
  readonly bytes: number;
  readonly hash: ReturnType<typeof createHash>;
}

/** The files of an AdapterHub save directory, by role: weights as safetensors, or as the PyTorch .bin older saves hold. */
export const SAVE_FILES = {
  adapterConfig: "adapter_config.json",
  adapterWeights: ["adapter.safetensors", "pytorch_adapter.bin"],
  fusionConfig: "adapter_fusion_config.json",
  fusionWeights: ["model_adapter_fusion.safetensors", "pytorch_model_adapter_fusion.bin"],
  headConfig: "head_config.json",
  headWeights: ["model_head.safetensors", "pytorch_model_head.bin"],
} as const;

/** Every file name a save directory may hold. */
export const ADAPTERHUB_FILES: ReadonlySet<string> = new Set(Object.values(SAVE_FILES).flat());


/** Config values the graph reproduces; any other value of these fields is refused. */
const ADAPTER_REQUIRED: Record<string, unknown> = {
  architecture: "bottleneck",
  mh_adapter: false,
  output_adapter: true,
  non_linearity: "relu",
  original_ln_before: true,
  original_ln_after: true,
  residual_before_ln: true,
  adapter_residual_before_ln: false,
  ln_before: false,
  ln_after: false,
  is_parallel: false,
  use_gating: false,
  phm_layer: false,
  inv_adapter: null,
};
/** Fields that only shape training or parameter-free variants we already refuse above. */
const ADAPTER_IGNORED = new Set([
  "reduction_factor",
  "scaling",
  "leave_out",
  "dropout",
  "init_weights",
  "init_weights_seed",
  "stochastic_depth",
  "cross_adapter",
  "inv_adapter_reduction_factor",
  "factorized_phm_W",
  "factorized_phm_rule",
  "hypercomplex_nonlinearity",
  "learn_phm",
  "phm_bias",
  "phm_c_init",
  "phm_dim",
  "phm_init_range",
  "phm_rank",
  "shared_W_phm",
  "shared_phm_rule",
]);

const FUSION_REQUIRED: Record<string, unknown> = { key: true, query: true, query_before_ln: false, residual_before: false };
/**
 * Fields with no effect on the served computation:
 * - value: read below (true: dynamic, false: static);
 * - value_before_softmax: W_v has no bias, so Σ p_i W_v u_i = W_v Σ p_i u_i either way;
 * - value_initialized, regularization, dropout_prob: training only;
 * - temperature: the library divides the scores by T, starting at 50 and lowered by 0.05 on every
 *   forward call until it reaches 1, and does not save T. A trained fusion has long reached T = 1,
 *   so the server always uses T = 1 (a freshly reloaded Python model differs from it, and from
 *   itself, during its first ~980 forward calls).
 */
const FUSION_IGNORED = new Set(["value", "value_before_softmax", "value_initialized", "regularization", "temperature", "dropout_prob"]);

/** Loads an adapter save dir; `loadAs` is the name it is served under (default: the saved name). */
export async function loadAdapter(dir: string, backbone: BackboneConfig, loadAs?: string): Promise<AdapterModule> {
  const configPath = join(dir, SAVE_FILES.adapterConfig);
  const files = newFiles();
  const raw = await readTrackedJson(configPath, files);
  const config = asObject(raw.config, configPath, "config");
  const savedName = savedNameOf(raw, configPath);
  checkHiddenSize(raw, backbone, configPath);
  checkFields(config, ADAPTER_REQUIRED, ADAPTER_IGNORED, configPath);
  const scaling = config.scaling ?? 1.0;
  if (typeof scaling !== "number" || !Number.isFinite(scaling)) {
    throw new ModelLoadError("unsupported_config", `${configPath}: scaling '${String(scaling)}' is not supported (only a constant number)`);
  }
  const leaveOut = new Set(Array.isArray(config.leave_out) ? config.leave_out.map(Number) : []);

  const weightsPath = await findWeights(dir, SAVE_FILES.adapterWeights);
  const module = `adapters.${savedName}`;
  const tensors = withCurrentNames(await readTrackedWeights(weightsPath, files, (name) => currentName(name).includes(`.${module}.`)));
  const d = backbone.hiddenSize;
  const perLayer = tensorsByLayer(tensors, { what: "adapter", name: savedName, module }, /^adapter_(?:down\.0|up)\.(?:weight|bias)$/, weightsPath, backbone);

  const layers: (AdapterLayer | null)[] = [];
  for (let l = 0; l < backbone.numLayers; l++) {
    const parts = perLayer.get(l);
    if (!parts) {
      if (leaveOut.has(l)) {
        layers.push(null);
        continue;
      }
      throw new ModelLoadError(
        "shape_mismatch",
        `${weightsPath}: adapter has no weights for layer ${l}; the backbone has ${backbone.numLayers} layers`,
      );
    }
    const get = (key: string) => {
      const t = parts.get(key);
      if (!t) throw new ModelLoadError("malformed_file", `${weightsPath}: layer ${l} lacks ${key}`);
      return t;
    };
    const downWeight = get("adapter_down.0.weight");
    const r = downWeight.shape[0];
    expectShape(downWeight, [r, d], `layer ${l} adapter_down.0.weight`, weightsPath);
    const downBias = expectShape(get("adapter_down.0.bias"), [r], `layer ${l} adapter_down.0.bias`, weightsPath);
    const upWeight = expectShape(get("adapter_up.weight"), [d, r], `layer ${l} adapter_up.weight`, weightsPath);
    const upBias = expectShape(get("adapter_up.bias"), [d], `layer ${l} adapter_up.bias`, weightsPath);
    const up = transpose(upWeight);
    layers.push({
      downWeight: transpose(downWeight),
      downBias,
      upWeight: scaled(up, scaling, `layer ${l} adapter_up.weight`, configPath),
      upBias: scaled(upBias, scaling, `layer ${l} adapter_up.bias`, configPath),
    });
  }
  const head = await loadOptionalHead(dir, backbone, files);
  return { name: loadAs ?? savedName, version: versionOf(files), dir, sizeBytes: files.bytes, layers, head };
}

/**
 * The fusion as served: the saved query and key are dropped once the score matrix is formed from
 * them (only the literal graph reads them), so a served fusion holds d² values per layer fewer
 * than its file rather than d² more.
 */
export function forServing(fusion: FusionModule<SavedFusionLayer>): FusionModule {
  return { ...fusion, layers: fusion.layers.map(({ scoreWeight, scoreBias, valueWeight }) => ({ scoreWeight, scoreBias, valueWeight })) };
}

/**
 * Loads a fusion save dir; `loadAs` is the name it is served under (default: the saved name). As
 * with `load_adapter_fusion(dir, load_as=...)`, renaming the fusion does not rename the adapters
 * it fuses: they are the ones served under the names its config lists.
 */
export async function loadFusion(dir: string, backbone: BackboneConfig, loadAs?: string, folder: FusionFolder = folderOfThisThread()): Promise<FusionModule<SavedFusionLayer>> {
  const configPath = join(dir, SAVE_FILES.fusionConfig);
  const files = newFiles();
  const raw = await readTrackedJson(configPath, files);
  const config = asObject(raw.config, configPath, "config");
  const savedName = savedNameOf(raw, configPath);
  const adapters = fusedAdapters(raw, savedName, configPath);
  checkHiddenSize(raw, backbone, configPath);
  checkFields(config, FUSION_REQUIRED, FUSION_IGNORED, configPath);
  if (typeof (config.value ?? false) !== "boolean") {
    throw new ModelLoadError("unsupported_config", `${configPath}: value ${JSON.stringify(config.value)} is not supported (true: dynamic, false: static)`);
  }
  const hasValue = config.value === true;

  const weightsPath = await findWeights(dir, SAVE_FILES.fusionWeights);
  const module = `adapter_fusion_layer.${savedName}`;
  const tensors = await readTrackedWeights(weightsPath, files, (name) => name.includes(`.${module}.`));
  const d = backbone.hiddenSize;
  const perLayer = tensorsByLayer(
    tensors,
    { what: "fusion", name: savedName, module },
    /^(?:query|key|value)\.(?:weight|bias)$/,
    weightsPath,
    backbone,
  );
  const saved: Omit<SavedFusionLayer, keyof ScoreMatrix>[] = [];
  for (let l = 0; l < backbone.numLayers; l++) {
    const parts = perLayer.get(l);
    if (!parts) throw new ModelLoadError("shape_mismatch", `${weightsPath}: fusion has no weights for layer ${l}; the backbone has ${backbone.numLayers} layers`);
    const get = (key: string, shape: number[]) => {
      const t = parts.get(key);
      if (!t) throw new ModelLoadError("malformed_file", `${weightsPath}: layer ${l} lacks ${key}`);
      return expectShape(t, shape, `layer ${l} ${key}`, weightsPath);
    };
    saved.push({
      queryWeight: get("query.weight", [d, d]),
      queryBias: get("query.bias", [d]),
      keyWeight: get("key.weight", [d, d]),
      keyBias: get("key.bias", [d]),
      valueWeight: hasValue ? get("value.weight", [d, d]) : null,
    });
  }
  const scores = await folder.scores(d, saved);
  scores.forEach(({ scoreWeight }, l) => {
    // Finite weights whose products are not: every score of the layer would be NaN.
    if (!scoreWeight.data.every(Number.isFinite)) {
      throw new ModelLoadError("non_finite_weights", `${weightsPath}: layer ${l}: query.weight and key.weight multiply to values beyond float32 (W_qᵀ·W_k)`);
    }
  });
  const layers: SavedFusionLayer[] = saved.map((layer, l) => ({ ...layer, ...scores[l] }));
  const head = await loadOptionalHead(dir, backbone, files);
  if (!head) throw new ModelLoadError("missing_file", `${dir}: a fusion route needs its prediction head (head_config.json)`);
  return {
    name: loadAs ?? savedName,
    version: versionOf(files),
    dir,
    sizeBytes: files.bytes,
    kind: hasValue ? "dynamic" : "static",
    adapters,
    layers,
    head,
  };
}

/**
 * The tensors of one module (`<prefix>.encoder.layer.<l>.output.<module>.<part>`, in DistilBERT
 * `<prefix>.transformer.layer.<l>.output_adapters.<module>.<part>`), grouped by
 * encoder layer and keyed by part. Other modules' tensors are skipped; one of this module with a
 * part that `parts` does not accept (a component the served computation lacks), or for a layer
 * the backbone does not have, is refused.
 */
function tensorsByLayer(
  tensors: Map<string, Tensor>,
  owner: { what: string; name: string; module: string },
  parts: RegExp,
  source: string,
  backbone: BackboneConfig,
): Map<number, Map<string, Tensor>> {
  const marker = `.${owner.module}.`;
  const { layer: layerPath, site } = adapterSite(backbone.modelType);
  const layerAt = new RegExp(`(?:^|\\.)${escapeRegExp(layerPath)}\\.(\\d+)\\.${escapeRegExp(site)}$`);
  const perLayer = new Map<number, Map<string, Tensor>>();
  for (const [tensorName, tensor] of tensors) {
    const at = tensorName.indexOf(marker);
    if (at < 0) continue;
    const layerMatch = layerAt.exec(tensorName.slice(0, at));
    const part = tensorName.slice(at + marker.length);
    if (!layerMatch || !parts.test(part)) {
      // A save from another model type has all of its tensors at another path: say where they belong.
      const where = layerMatch ? "" : ` (with a ${backbone.modelType} backbone, AdapterHub saves them as …${layerPath}.<n>.${site}${marker}…)`;
      throw new ModelLoadError("unsupported_config", `${source}: unexpected tensor ${tensorName} of ${owner.what} '${owner.name}'${where}`);
    }
    const layer = Number(layerMatch[1]);
    if (layer >= backbone.numLayers) {
      throw new ModelLoadError("shape_mismatch", `${source}: ${owner.what} has weights for layer ${layer}, the backbone has ${backbone.numLayers} layers`);
    }
    if (!perLayer.has(layer)) perLayer.set(layer, new Map());
    perLayer.get(layer)!.set(part, tensor);
  }
  if (perLayer.size === 0) {
    throw new ModelLoadError("malformed_file", `${source}: holds no tensors of ${owner.what} '${owner.name}' (named …${marker}…)`);
  }
  return perLayer;
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Module names of adapter-transformers 1.x saves, renamed in this order as `adapters` renames them when loading. */
const LEGACY_ADAPTER_MODULES: readonly [string, string][] = [
  ["attention_text_task_adapters", "adapters"],
  ["attention_text_lang_adapters", "adapters"],
  ["layer_text_task_adapters", "adapters"],
  ["layer_text_lang_adapters", "adapters"],
  ["invertible_lang_adapters", "invertible_adapters"],
];

const currentName = (name: string) => LEGACY_ADAPTER_MODULES.reduce((n, [old, current]) => n.replaceAll(old, current), name);

function withCurrentNames(tensors: Map<string, Tensor>): Map<string, Tensor> {
  return new Map([...tensors].map(([name, t]) => [currentName(name), t]));
}

/**
 * The adapter's scaling folded into a weight. A finite scaling can still overflow float32 (1e300
 * is finite, its product is not), so the product is what is checked.
 */
function scaled(t: Tensor, scaling: number, what: string, source: string): Tensor {
  const data = t.data.map((v) => v * scaling);
  if (!data.every(Number.isFinite)) {
    throw new ModelLoadError("non_finite_weights", `${source}: scaling ${scaling} makes ${what} overflow to Inf or NaN`);
  }
  return { shape: t.shape, data };
}

/** The name a module was saved under, which names its tensors. */
function savedNameOf(raw: Record<string, unknown>, source: string): string {
  if (typeof raw.name !== "string" || !raw.name) throw new ModelLoadError("malformed_file", `${source}: field 'name' is missing`);
  return raw.name;
}

/** `adapter_names`, as `adapters` reads it; saves without it name the fusion after its adapters. */
function fusedAdapters(raw: Record<string, unknown>, savedName: string, source: string): string[] {
  const listed = raw.adapter_names ?? savedName.split(",");
  if (!Array.isArray(listed) || listed.length === 0 || !listed.every((a) => typeof a === "string" && a.length > 0)) {
    throw new ModelLoadError("malformed_file", `${source}: field 'adapter_names' must list the fused adapters' names (found ${JSON.stringify(raw.adapter_names)})`);
  }
  if (new Set(listed).size !== listed.length) {
    throw new ModelLoadError("malformed_file", `${source}: the fused adapters list an adapter twice (${listed.join(",")})`);
  }
  return listed;
}

const HEAD_TYPES: HeadType[] = ["classification", "multilabel_classification", "tagging"];
const HEAD_ACTIVATIONS: Activation[] = ["tanh", "relu", "gelu", "sigmoid", "linear"];

async function loadOptionalHead(dir: string, backbone: BackboneConfig, files: LoadedFiles): Promise<PredictionHead | null> {
  const configPath = join(dir, SAVE_FILES.headConfig);
  if (!(await exists(configPath))) return null;
  const raw = await readTrackedJson(configPath, files);
  const config = asObject(raw.config, configPath, "config");
  checkHiddenSize(raw, backbone, configPath);
  const type = config.head_type as HeadType;
  if (!HEAD_TYPES.includes(type)) {
    throw new ModelLoadError("unsupported_config", `${configPath}: head_type '${String(config.head_type)}' is not supported (supported: ${HEAD_TYPES.join(", ")})`);
  }
  if (config.use_pooler) throw new ModelLoadError("unsupported_config", `${configPath}: use_pooler 'true' is not supported`);
  // AdapterHub writes null when the head has no activation between its layers.
  const activation = (config.activation_function ?? "linear") as Activation;
  if (!HEAD_ACTIVATIONS.includes(activation)) {
    throw new ModelLoadError("unsupported_config", `${configPath}: activation_function '${String(activation)}' is not supported (supported: ${HEAD_ACTIVATIONS.join(", ")})`);
  }
  const labels = labelsOf(config, configPath);
  const headName = savedNameOf(raw, configPath);

  const weightsPath = await findWeights(dir, SAVE_FILES.headWeights);
  const prefix = `heads.${headName}.`;
  const tensors = await readTrackedWeights(weightsPath, files, (name) => name.startsWith(prefix));
  const indices = new Map<number, { weight?: Tensor; bias?: Tensor }>();
  for (const [tensorName, tensor] of tensors) {
    if (!tensorName.startsWith(prefix)) continue;
    const m = /^(\d+)\.(weight|bias)$/.exec(tensorName.slice(prefix.length));
    if (!m) throw new ModelLoadError("unsupported_config", `${weightsPath}: unexpected tensor ${tensorName} of head '${headName}'`);
    const entry = indices.get(Number(m[1])) ?? {};
    entry[m[2] as "weight" | "bias"] = tensor;
    indices.set(Number(m[1]), entry);
  }
  const ordered = [...indices.entries()].sort((a, b) => a[0] - b[0]).map(([, e]) => e);
  let inDim = backbone.hiddenSize;
  const linears = ordered.map((e, i) => {
    if (!e.weight) throw new ModelLoadError("malformed_file", `${weightsPath}: a head layer has a bias but no weight`);
    const outDim = i === ordered.length - 1 ? labels.length : e.weight.shape[0];
    expectShape(e.weight, [outDim, inDim], `head layer ${i} weight`, weightsPath);
    if (e.bias) expectShape(e.bias, [outDim], `head layer ${i} bias`, weightsPath);
    inDim = outDim;
    return { weight: transpose(e.weight), bias: e.bias ?? null };
  });
  if (linears.length === 0) throw new ModelLoadError("malformed_file", `${weightsPath}: holds no tensors of head '${headName}' (named ${prefix}…)`);
  return { type, labels, linears, activation };
}

/**
 * The most labels a head may have: every prediction lists every label's score, and the head's
 * last layer holds num_labels × hidden_size floats.
 */
export const MAX_LABELS = 10_000;

function labelsOf(config: Record<string, unknown>, source: string): string[] {
  // Checked before the labels are built: 1e10 would be an array no heap holds.
  const numLabels = config.num_labels;
  if (typeof numLabels !== "number" || !Number.isInteger(numLabels) || numLabels < 1 || numLabels > MAX_LABELS) {
    throw new ModelLoadError("malformed_file", `${source}: num_labels must be an integer from 1 to ${MAX_LABELS} (found ${JSON.stringify(numLabels)})`);
  }
  const labels = Array.from({ length: numLabels }, (_, i) => `LABEL_${i}`);
  const label2id = config.label2id ?? null;
  if (label2id !== null) {
    if (typeof label2id !== "object" || Array.isArray(label2id)) throw new ModelLoadError("malformed_file", `${source}: label2id must be an object of label names to ids`);
    const named = new Map<number, string>();
    for (const [label, id] of Object.entries(label2id)) {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= numLabels) {
        throw new ModelLoadError("malformed_file", `${source}: label2id maps '${label}' to ${JSON.stringify(id)}, not an integer in 0..${numLabels - 1}`);
      }
      if (named.has(id)) throw new ModelLoadError("malformed_file", `${source}: label2id maps both '${named.get(id)}' and '${label}' to ${id}`);
      named.set(id, label);
      labels[id] = label;
    }
  }
  // Scores are answered by label name: two labels of one name would lose one score.
  const seen = new Set<string>();
  for (const label of labels) {
    if (seen.has(label)) throw new ModelLoadError("malformed_file", `${source}: two labels are named '${label}' (label2id names some ids, the others are LABEL_<id>)`);
    seen.add(label);
  }
  return labels;
}

/** Fields whose value the adapters library lowercases before use (Activation_Function_Class). */
const CASE_INSENSITIVE = new Set(["non_linearity"]);

function checkFields(config: Record<string, unknown>, required: Record<string, unknown>, ignored: Set<string>, source: string) {
  // Required fields first: another method's config (LoRA, prefix tuning) is refused for its
  // `architecture`, not for the first field of its own this server does not know.
  const entries = Object.entries(config).sort(([a], [b]) => Number(Object.hasOwn(required, b)) - Number(Object.hasOwn(required, a)));
  for (const [field, value] of entries) {
    if (field in required) {
      const normalized = CASE_INSENSITIVE.has(field) && typeof value === "string" ? value.toLowerCase() : value;
      if (normalized !== required[field]) {
        throw new ModelLoadError(
          "unsupported_config",
          `${source}: ${field} ${JSON.stringify(value)} is not supported (supported: ${JSON.stringify(required[field])})`,
        );
      }
    } else if (!ignored.has(field)) {
      throw new ModelLoadError("unsupported_config", `${source}: unknown config field '${field}'`);
    }
  }
}

function checkHiddenSize(raw: Record<string, unknown>, backbone: BackboneConfig, source: string) {
  if (raw.hidden_size !== undefined && raw.hidden_size !== backbone.hiddenSize) {
    throw new ModelLoadError(
      "shape_mismatch",
      `${source}: hidden_size ${String(raw.hidden_size)} does not match the backbone's ${backbone.hiddenSize}`,
    );
  }
}

function expectShape(t: Tensor, shape: number[], what: string, source: string): Tensor {
  if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
    throw new ModelLoadError("shape_mismatch", `${source}: ${what} has shape [${t.shape}], expected [${shape}]`);
  }
  return t;
}

function asObject(value: unknown, source: string, field: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ModelLoadError("malformed_file", `${source}: field '${field}' must be an object`);
  }
  return value as Record<string, unknown>;
}

/**
 * The safetensors file where there is one, else the PyTorch .bin: the choice of `adapters` when
 * loading with use_safetensors=True, the one setting in which it loads both kinds of save.
 */
async function findWeights(dir: string, candidates: readonly string[]): Promise<string> {
  for (const file of candidates) {
    if (await exists(join(dir, file))) return join(dir, file);
  }
  throw new ModelLoadError("missing_file", `${dir}: ${candidates.join(" (or ")}) is missing`);
}

function newFiles(): LoadedFiles & { bytes: number } {
  return { bytes: 0, hash: createHash("sha256") };
}

/** Reads a file once, counting its bytes into the module's size and content version. */
async function readTracked(path: string, files: LoadedFiles & { bytes: number }): Promise<Buffer> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch {
    throw new ModelLoadError("missing_file", `cannot read ${path}`);
  }
  files.hash.update(bytes);
  files.bytes += bytes.length;
  return bytes;
}

async function readTrackedJson(path: string, files: LoadedFiles & { bytes: number }): Promise<Record<string, unknown>> {
  return parseJsonObject(await readTracked(path, files), path);
}

/** The weights file's tensors that `keep` names: the module's own, decoded; the others only checked. */
async function readTrackedWeights(path: string, files: LoadedFiles & { bytes: number }, keep: TensorFilter) {
  const bytes = await readTracked(path, files);
  return path.endsWith(".bin") ? parseTorchSave(bytes, path, keep) : parseSafetensors(bytes, path, keep);
}

/** Content-addressed: the same files always give the same version, across restarts and copies. */
function versionOf(files: LoadedFiles): string {
  return files.hash.digest("hex").slice(0, 12);
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
