import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FusionEngine } from "../../src/engine/engine.js";
import { padBatch } from "../../src/engine/packing.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { backboneFeeds, feedBytes, routeFeeds } from "../../src/engine/layout.js";

/**
 * Acceptance 5 of issue 2: one backbone in memory. On the real default backbone
 * (all-MiniLM-L6-v2, d = 384, 6 layers), opening a library of 5 adapters (reduction factor 16)
 * and 3 fusions, and running every route once, grows the process's resident memory by no more
 * than the adapter and fusion weights plus the routes' graph inputs plus a small constant, and
 * far less than one more copy of the backbone per route.
 *
 * The adapters and fusions are synthetic, written here in AdapterHub's save format (same tensor
 * names and configs as the parity fixtures, random finite weights).
 */

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const MINILM = join(REPO, "models", "backbones", "all-MiniLM-L6-v2");
const MB = 1024 * 1024;
/** Allocator slack, ONNX Runtime's arena for the adapter intermediates, V8 bookkeeping. */
const CONSTANT = 64 * MB;
const ADAPTERS = ["sentiment", "emotion", "offensive", "irony", "hate"];
const FUSIONS: Record<string, { adapters: string[]; dynamic: boolean }> = {
  "fuse-all": { adapters: ADAPTERS, dynamic: true },
  "fuse-three": { adapters: ["sentiment", "emotion", "irony"], dynamic: true },
  "fuse-two-static": { adapters: ["offensive", "hate"], dynamic: false },
};
const REDUCTION_FACTOR = 16;

// ---------------------------------------------------------------------------------------------
// A garbage collector to call, and readings that have settled
// ---------------------------------------------------------------------------------------------

const gc: () => void =
  (globalThis as { gc?: () => void }).gc ??
  (() => {
    setFlagsFromString("--expose-gc");
    return runInNewContext("gc") as () => void;
  })();

/** RSS after full collections, the smallest of a few readings taken as the heap settles. */
async function settledMemory() {
  const readings: NodeJS.MemoryUsage[] = [];
  for (let i = 0; i < 4; i++) {
    gc();
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
    readings.push(process.memoryUsage());
  }
  return readings.reduce((a, b) => (b.rss < a.rss ? b : a));
}

// ---------------------------------------------------------------------------------------------
// Synthetic AdapterHub save directories
// ---------------------------------------------------------------------------------------------

let seed = 12345;
/** Uniform in [-scale, scale), deterministic. */
function randomTensor(shape: number[], scale: number): { shape: number[]; data: Float32Array } {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    data[i] = (seed / 2 ** 32 - 0.5) * 2 * scale;
  }
  return { shape, data };
}

/** A float32 safetensors file, tensors in name order as torch writes them. */
function safetensors(tensors: Record<string, { shape: number[]; data: Float32Array }>): Buffer {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const name of names) {
    const bytes = tensors[name].data.byteLength;
    header[name] = { dtype: "F32", shape: tensors[name].shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8); // safetensors pads the header to 8 bytes
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, Buffer.from(json), ...names.map((n) => Buffer.from(tensors[n].data.buffer))]);
}

const saveInfo = (name: string, d: number) => ({
  hidden_size: d,
  model_class: "BertAdapterModel",
  model_name: "sentence-transformers/all-MiniLM-L6-v2",
  model_type: "bert",
  name,
  version: "adapters.1.3.0",
});

/** A classification head as AdapterHub saves it: Linear(d, d), tanh, Linear(d, labels). */
async function writeHead(dir: string, name: string, d: number, labels: number) {
  const config = {
    config: {
      activation_function: "tanh",
      bias: true,
      dropout_prob: null,
      head_type: "classification",
      label2id: Object.fromEntries(Array.from({ length: labels }, (_, i) => [`${name.toUpperCase()}_${i}`, i])),
      layers: 2,
      num_labels: labels,
      use_pooler: false,
    },
    ...saveInfo(name, d),
  };
  await writeFile(join(dir, "head_config.json"), JSON.stringify(config, null, 2));
  const weights = safetensors({
    [`heads.${name}.1.weight`]: randomTensor([d, d], 0.05),
    [`heads.${name}.1.bias`]: randomTensor([d], 0.05),
    [`heads.${name}.4.weight`]: randomTensor([labels, d], 0.05),
    [`heads.${name}.4.bias`]: randomTensor([labels], 0.05),
  });
  await writeFile(join(dir, "model_head.safetensors"), weights);
}

async function writeAdapter(dir: string, name: string, d: number, layers: number) {
  await mkdir(dir, { recursive: true });
  const config = {
    config: {
      adapter_residual_before_ln: false,
      cross_adapter: false,
      dropout: 0.0,
      factorized_phm_W: true,
      factorized_phm_rule: false,
      hypercomplex_nonlinearity: "glorot-uniform",
      init_weights: "bert",
      init_weights_seed: null,
      inv_adapter: null,
      inv_adapter_reduction_factor: null,
      is_parallel: false,
      learn_phm: true,
      leave_out: [],
      ln_after: false,
      ln_before: false,
      mh_adapter: false,
      non_linearity: "relu",
      original_ln_after: true,
      original_ln_before: true,
      output_adapter: true,
      phm_bias: true,
      phm_c_init: "normal",
      phm_dim: 4,
      phm_init_range: 0.0001,
      phm_layer: false,
      phm_rank: 1,
      reduction_factor: REDUCTION_FACTOR,
      residual_before_ln: true,
      scaling: 1.0,
      shared_W_phm: false,
      shared_phm_rule: true,
      stochastic_depth: 0.0,
      use_gating: false,
    },
    ...saveInfo(name, d),
  };
  await writeFile(join(dir, "adapter_config.json"), JSON.stringify(config, null, 2));
  const r = d / REDUCTION_FACTOR;
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (let l = 0; l < layers; l++) {
    const p = `bert.encoder.layer.${l}.output.adapters.${name}`;
    tensors[`${p}.adapter_down.0.weight`] = randomTensor([r, d], 0.05);
    tensors[`${p}.adapter_down.0.bias`] = randomTensor([r], 0.05);
    tensors[`${p}.adapter_up.weight`] = randomTensor([d, r], 0.05);
    tensors[`${p}.adapter_up.bias`] = randomTensor([d], 0.05);
  }
  await writeFile(join(dir, "adapter.safetensors"), safetensors(tensors));
  await writeHead(dir, name, d, 3);
}

async function writeFusion(dir: string, route: string, adapters: string[], dynamic: boolean, d: number, layers: number) {
  await mkdir(dir, { recursive: true });
  const name = adapters.join(",");
  const config = {
    adapter_names: adapters,
    config: {
      dropout_prob: null,
      key: true,
      query: true,
      query_before_ln: false,
      regularization: dynamic,
      residual_before: false,
      temperature: false,
      value: dynamic,
      value_before_softmax: true,
      value_initialized: dynamic,
    },
    ...saveInfo(name, d),
  };
  await writeFile(join(dir, "adapter_fusion_config.json"), JSON.stringify(config, null, 2));
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (let l = 0; l < layers; l++) {
    const p = `bert.encoder.layer.${l}.output.adapter_fusion_layer.${name}`;
    tensors[`${p}.query.weight`] = randomTensor([d, d], 0.05);
    tensors[`${p}.query.bias`] = randomTensor([d], 0.05);
    tensors[`${p}.key.weight`] = randomTensor([d, d], 0.05);
    tensors[`${p}.key.bias`] = randomTensor([d], 0.05);
    if (dynamic) tensors[`${p}.value.weight`] = randomTensor([d, d], 0.05);
  }
  await writeFile(join(dir, "model_adapter_fusion.safetensors"), safetensors(tensors));
  await writeHead(dir, route, d, 2);
}

/** Sum of the sizes of every file under the save directories (configs, weights, heads). */
async function filesBytes(dirs: string[]): Promise<number> {
  let total = 0;
  for (const dir of dirs) for (const f of await readdir(dir)) total += (await stat(join(dir, f))).size;
  return total;
}

// ---------------------------------------------------------------------------------------------
// The measurement
// ---------------------------------------------------------------------------------------------

/**
 * glibc keeps freed memory and hands it out again without it ever leaving RSS, so the backbone's
 * load-time copies, freed before the baseline, would silently absorb the library's growth. The
 * measurement therefore runs in a fresh process in which every allocation of 128 KiB or more is
 * its own mapping, returned to the system when freed (other C libraries ignore the variable).
 */
const CHILD_ENV = "FUSION_SERVE_MEMORY_CHILD";
if (process.env[CHILD_ENV] !== "1") {
  t.spawn(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url)],
    { env: { ...process.env, [CHILD_ENV]: "1", MALLOC_MMAP_THRESHOLD_: "131072" } },
    "memory measured in a fresh process (large allocations unmapped when freed)",
  );
} else t.test("one backbone in memory: 5 adapters and 3 fusion routes add their weights and feeds, not backbone copies", async (t) => {
  if (!existsSync(join(MINILM, "model.safetensors"))) {
    t.fail(`the default backbone is missing at ${MINILM}: run 'node scripts/fetch-backbone.mjs' (npm test does it first)`);
    return;
  }
  const root = await mkdtemp(join(tmpdir(), "memory-library-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));

  const backboneBytes = (await stat(join(MINILM, "model.safetensors"))).size;
  let engine: FusionEngine | undefined = undefined;
  t.teardown(() => engine?.close());

  // Sequences of a fixed shape (8 × 32 tokens), so every run asks ONNX Runtime for the same activations.
  const batch = padBatch(Array.from({ length: 8 }, (_, b) => [101, ...Array.from({ length: 30 }, (_, i) => 1000 + ((b * 31 + i * 7) % 20000)), 102]));

  const start = await settledMemory();
  const config = await (async () => {
    const backbone = await loadBackbone(MINILM);
    engine = await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused" });
    // One pass with the backbone alone, so the session's arena and thread pool exist before the baseline.
    await engine.run(batch, await backboneFeeds(backbone.config));
    return backbone.config; // the Backbone's JS-side weights are dropped here: the session holds the backbone.
  })();
  t.equal(config.hiddenSize, 384);
  t.equal(config.numLayers, 6);
  const d = config.hiddenSize;

  // Write the library (outside the measured span: the writer's buffers are garbage afterwards).
  const dirs: string[] = [];
  for (const name of ADAPTERS) {
    dirs.push(join(root, "adapters", name, "1"));
    await writeAdapter(dirs[dirs.length - 1], name, d, config.numLayers);
  }
  for (const [route, f] of Object.entries(FUSIONS)) {
    dirs.push(join(root, "fusions", route, "1"));
    await writeFusion(dirs[dirs.length - 1], route, f.adapters, f.dynamic, d, config.numLayers);
  }
  const versions = (names: string[]) => Object.fromEntries(names.map((n) => [n, "1"]));
  await writeFile(join(root, "library.json"), JSON.stringify({ backbone: MINILM, adapters: versions(ADAPTERS), fusions: versions(Object.keys(FUSIONS)) }));
  const weightBytes = await filesBytes(dirs);

  const withEngine = await settledMemory();

  const library = await AdapterLibrary.open(root, config);
  const routes = [...library.state.routes.values()];
  t.same(routes.map((r) => r.name).sort(), [...ADAPTERS, ...Object.keys(FUSIONS)].sort(), "5 adapter routes and 3 fusion routes");
  const feeds = await Promise.all(routes.map((route) => routeFeeds(config, route)));
  for (const [i, route] of routes.entries()) {
    const result = await engine!.run(batch, feeds[i]);
    t.ok(result.hidden.every(Number.isFinite), `${route.name}: one forward pass, finite output`);
    t.equal(result.fusionProbs?.adapters, route.adapters.length, `${route.name}: all ${route.adapters.length} adapter(s) in one pass`);
  }
  const withLibrary = await settledMemory();

  const routeBytes = feeds.reduce((sum, f) => sum + feedBytes(f), 0);
  const growth = withLibrary.rss - withEngine.rss;
  const mb = (n: number) => `${(n / MB).toFixed(1)} MB`;
  // The modules as held: the files' tensors, each fusion's query and key replaced by their score matrix.
  const moduleBytes = library.moduleBytes;
  const budget = moduleBytes + routeBytes + CONSTANT;
  t.comment(`backbone model.safetensors: ${mb(backboneBytes)}; RSS before the engine ${mb(start.rss)}, with the engine ${mb(withEngine.rss)} (+${mb(withEngine.rss - start.rss)})`);
  t.comment(`adapter + fusion + head files: ${mb(weightBytes)}; graph inputs (feeds) of the ${routes.length} routes: ${mb(routeBytes)}`);
  t.comment(
    `RSS growth from opening the library and running each route once: ${mb(growth)} ` +
      `(JS array buffers +${mb(withLibrary.arrayBuffers - withEngine.arrayBuffers)}, V8 heap +${mb(withLibrary.heapUsed - withEngine.heapUsed)}); ` +
      `budget ${mb(budget)} = modules + feeds + ${mb(CONSTANT)}; one backbone copy per route would be ${mb(routes.length * backboneBytes)}`,
  );
  t.ok(growth <= budget, `growth ${mb(growth)} ≤ modules ${mb(moduleBytes)} + feeds ${mb(routeBytes)} + ${mb(CONSTANT)}`);
  t.ok(
    growth < (routes.length * backboneBytes) / 4,
    `growth ${mb(growth)} is far below one backbone copy per route (${routes.length} × ${mb(backboneBytes)} = ${mb(routes.length * backboneBytes)})`,
  );
  t.ok(withEngine.rss - start.rss < 4 * backboneBytes, `the engine itself holds the backbone about once (${mb(withEngine.rss - start.rss)})`);
});
