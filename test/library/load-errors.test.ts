import { cp, mkdir, mkdtemp, readFile, readdir, rm, truncate, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { ModelLoadError } from "../../src/errors.js";
import { statusOf } from "../../src/server/status.js";
import { loadAdapter, loadFusion } from "../../src/library/adapterhub.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { ENGINE_FIXTURES, TINY_BACKBONE } from "../fixtures.js";

/**
 * Acceptance 4 of issue 2: bad input is refused at load with a typed error (ModelLoadError with a
 * stable `code` and a message naming the file and field), and nothing is half-loaded: opening a
 * broken library yields no library, and a refused change on an open library leaves its state the
 * very same object, its manifest and its version folders untouched.
 */

const backbone = await loadBackbone(TINY_BACKBONE);
const config = backbone.config;
const ADAPTERS = join(ENGINE_FIXTURES, "adapters");
const FUSIONS = join(ENGINE_FIXTURES, "fusions");
const FOREIGN = join(ENGINE_FIXTURES, "foreign");

type Code = ConstructorParameters<typeof ModelLoadError>[0];
/** The type of a subtest's `t` (the last overload of t.test takes just the callback). */
type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

/** A fresh temp dir per test, removed in teardown. */
async function tempDir(t: Tap, prefix = "load-errors-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Copies a fixture save directory into a temp dir and returns the copy. */
async function copyOf(t: Tap, source: string): Promise<string> {
  const dir = join(await tempDir(t), "save");
  await cp(source, dir, { recursive: true });
  return dir;
}

/** Asserts that `promise` rejects with a ModelLoadError of `code` whose message matches every pattern. */
async function refused(t: Tap, promise: Promise<unknown>, code: Code, ...mentions: (string | RegExp)[]) {
  let error: unknown;
  await t.rejects(
    promise.catch((e) => {
      error = e;
      throw e;
    }),
    { constructor: ModelLoadError, code, kind: "unloadable_model" },
    `refused with ModelLoadError '${code}'`,
  );
  t.equal(statusOf(error), 422, "answered 422");
  const message = error instanceof Error ? error.message : String(error);
  for (const m of mentions) {
    const re = typeof m === "string" ? new RegExp(m.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")) : m;
    t.ok(re.test(message), `the message names ${String(m)}: ${message}`);
  }
}

/** Byte offset of the first float of `tensor` inside a safetensors file. */
function floatOffset(bytes: Buffer, tensor: string, index = 0): number {
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
  if (!header[tensor]) throw new Error(`no tensor ${tensor}`);
  return 8 + headerLength + header[tensor].data_offsets[0] + 4 * index;
}

async function pokeFloat(file: string, tensor: string, value: number, index = 0) {
  const bytes = await readFile(file);
  bytes.writeFloatLE(value, floatOffset(bytes, tensor, index));
  await writeFile(file, bytes);
}

async function editJson(file: string, edit: (json: Record<string, any>) => void) {
  const json = JSON.parse(await readFile(file, "utf8"));
  edit(json);
  await writeFile(file, JSON.stringify(json, null, 2));
}

/**
 * A library root in a temp dir: adapters/<name>/1 and fusions/<name>/1 copied from save dirs,
 * and a library.json naming exactly those.
 */
async function libraryOf(t: Tap, adapters: Record<string, string>, fusions: Record<string, string>): Promise<string> {
  const root = await tempDir(t, "library-");
  for (const [kind, modules] of [["adapters", adapters], ["fusions", fusions]] as const) {
    for (const [name, source] of Object.entries(modules)) {
      await mkdir(join(root, kind, name), { recursive: true });
      await cp(source, join(root, kind, name, "1"), { recursive: true, dereference: true });
    }
  }
  const versions = (m: Record<string, string>) => Object.fromEntries(Object.keys(m).map((n) => [n, "1"]));
  await writeFile(join(root, "library.json"), JSON.stringify({ backbone: TINY_BACKBONE, adapters: versions(adapters), fusions: versions(fusions) }));
  return root;
}

/** Everything on disk under a library root, path → content, to prove a refused change wrote nothing. */
async function snapshot(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name);
    out.set(path, entry.isFile() ? (await readFile(path)).toString("base64") : "<dir>");
  }
  return out;
}

/** Opens a healthy library (a1, a2, dyn2), runs a refused change, and checks nothing moved. */
async function refusedChange(
  t: Tap,
  change: (library: AdapterLibrary) => Promise<unknown>,
  code: Code,
  ...mentions: (string | RegExp)[]
) {
  const root = await libraryOf(t, { a1: join(ADAPTERS, "a1"), a2: join(ADAPTERS, "a2") }, { dyn2: join(FUSIONS, "dyn2") });
  const library = await AdapterLibrary.open(root, config);
  const state = library.state;
  const routes = new Map([...state.routes].map(([n, r]) => [n, r.version]));
  const files = await snapshot(root);
  await refused(t, change(library), code, ...mentions);
  t.equal(library.state, state, "the live state is the very same object");
  t.same(new Map([...library.state.routes].map(([n, r]) => [n, r.version])), routes, "every route keeps its version");
  t.same(await snapshot(root), files, "the manifest and version folders are untouched (no new folder)");
}

// ---------------------------------------------------------------------------------------------
// Missing files
// ---------------------------------------------------------------------------------------------

t.test("missing file: an adapter directory without adapter.safetensors is refused (missing_file)", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  await unlink(join(dir, "adapter.safetensors"));
  await refused(t, loadAdapter(dir, config), "missing_file", "adapter.safetensors", dir);
});

t.test("missing file: a library whose adapter lacks adapter.safetensors does not open", async (t) => {
  const broken = await copyOf(t, join(ADAPTERS, "a2"));
  await unlink(join(broken, "adapter.safetensors"));
  const root = await libraryOf(t, { a1: join(ADAPTERS, "a1"), a2: broken }, { dyn2: join(FUSIONS, "dyn2") });
  let library: AdapterLibrary | undefined;
  await refused(
    t,
    AdapterLibrary.open(root, config).then((l) => (library = l)),
    "missing_file",
    "adapter.safetensors",
    join(root, "adapters", "a2", "1"),
  );
  t.equal(library, undefined, "no library object exists");
});

t.test("missing file: replacing an adapter on an open library with a save lacking adapter.safetensors changes nothing", async (t) => {
  const broken = await copyOf(t, join(ADAPTERS, "a1"));
  await unlink(join(broken, "adapter.safetensors"));
  await refusedChange(t, (library) => library.putAdapter("a1", broken), "missing_file", "adapter.safetensors");
});

t.test("missing file: an adapter directory without adapter_config.json is refused (missing_file)", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  await unlink(join(dir, "adapter_config.json"));
  await refused(t, loadAdapter(dir, config), "missing_file", join(dir, "adapter_config.json"));
});

t.test("missing file: a fusion without its head (head_config.json) is refused (missing_file)", async (t) => {
  const dir = await copyOf(t, join(FUSIONS, "dyn2"));
  await unlink(join(dir, "head_config.json"));
  await unlink(join(dir, "model_head.safetensors"));
  await refused(t, loadFusion(dir, config), "missing_file", "head_config.json", dir);
});

t.test("missing file: a fusion whose head_config.json has no model_head.safetensors is refused (missing_file)", async (t) => {
  const dir = await copyOf(t, join(FUSIONS, "dyn2"));
  await unlink(join(dir, "model_head.safetensors"));
  await refused(t, loadFusion(dir, config), "missing_file", "model_head.safetensors", dir);
  await refusedChange(t, (library) => library.putFusion("dyn2", dir), "missing_file", "model_head.safetensors");
});

t.test("missing file: a fusion directory without model_adapter_fusion.safetensors is refused (missing_file)", async (t) => {
  const dir = await copyOf(t, join(FUSIONS, "dyn5"));
  await unlink(join(dir, "model_adapter_fusion.safetensors"));
  await refused(t, loadFusion(dir, config), "missing_file", "model_adapter_fusion.safetensors", dir);
});

t.test("missing file: a directory with neither adapter.safetensors nor pytorch_adapter.bin names both (missing_file)", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  await unlink(join(dir, "adapter.safetensors"));
  await refused(t, loadAdapter(dir, config), "missing_file", "adapter.safetensors (or pytorch_adapter.bin)", dir);
});

t.test("malformed file: a pytorch_adapter.bin that is not a PyTorch save is refused (malformed_file)", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  await unlink(join(dir, "adapter.safetensors"));
  await writeFile(join(dir, "pytorch_adapter.bin"), "not a save");
  await refused(t, loadAdapter(dir, config), "malformed_file", join(dir, "pytorch_adapter.bin"));
  await refusedChange(t, (library) => library.putAdapter("a1", dir), "malformed_file", "pytorch_adapter.bin");
});

// ---------------------------------------------------------------------------------------------
// Wrong hidden size, wrong number of layers
// ---------------------------------------------------------------------------------------------

t.test("wrong hidden size: an adapter saved for d=48 is refused for the d=64 backbone (shape_mismatch)", async (t) => {
  const dir = join(FOREIGN, "hidden48");
  await refused(t, loadAdapter(dir, config), "shape_mismatch", "adapter_config.json", "hidden_size", "48", "64");
});

t.test("wrong hidden size: caught from the tensor shapes when the config does not state hidden_size", async (t) => {
  const dir = await copyOf(t, join(FOREIGN, "hidden48"));
  await editJson(join(dir, "adapter_config.json"), (j) => delete j.hidden_size);
  await refused(t, loadAdapter(dir, config), "shape_mismatch", "adapter.safetensors", "adapter_down.0.weight", "48");
});

t.test("wrong hidden size: a library holding the d=48 adapter does not open, and a put of it changes nothing", async (t) => {
  const root = await libraryOf(t, { a1: join(ADAPTERS, "a1"), hidden48: join(FOREIGN, "hidden48") }, {});
  let library: AdapterLibrary | undefined;
  await refused(t, AdapterLibrary.open(root, config).then((l) => (library = l)), "shape_mismatch", "hidden_size");
  t.equal(library, undefined, "no library object exists");
  await refusedChange(t, (library) => library.putAdapter("hidden48", join(FOREIGN, "hidden48")), "shape_mismatch", "hidden_size");
});

t.test("wrong number of layers: an adapter of a 2-layer model is refused for the 3-layer backbone (shape_mismatch)", async (t) => {
  await refused(t, loadAdapter(join(FOREIGN, "layers2"), config), "shape_mismatch", "adapter.safetensors", "layer 2", "3 layers");
  await refusedChange(t, (library) => library.putAdapter("layers2", join(FOREIGN, "layers2")), "shape_mismatch", "layer 2");
});

t.test("wrong number of layers: an adapter with more layers than the backbone is refused (shape_mismatch)", async (t) => {
  const twoLayers = { ...config, numLayers: 2 };
  await refused(t, loadAdapter(join(ADAPTERS, "a1"), twoLayers), "shape_mismatch", "adapter.safetensors", "layer 2", "2 layers");
  await refused(t, loadFusion(join(FUSIONS, "dyn2"), twoLayers), "shape_mismatch", "model_adapter_fusion.safetensors", "layer 2");
});

// ---------------------------------------------------------------------------------------------
// NaN / Inf weights, truncated or malformed safetensors
// ---------------------------------------------------------------------------------------------

const A1_DOWN = "bert.encoder.layer.1.output.adapters.a1.adapter_down.0.weight";

t.test("NaN weights: an adapter with a NaN inside adapter.safetensors is refused (non_finite_weights)", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  await pokeFloat(join(dir, "adapter.safetensors"), A1_DOWN, NaN, 37);
  await refused(t, loadAdapter(dir, config), "non_finite_weights", "adapter.safetensors", A1_DOWN, "NaN");
  await refusedChange(t, (library) => library.putAdapter("a1", dir), "non_finite_weights", A1_DOWN);
});

t.test("Inf weights: an adapter with +Inf inside adapter.safetensors is refused (non_finite_weights)", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  await pokeFloat(join(dir, "adapter.safetensors"), A1_DOWN, Infinity, 5);
  await refused(t, loadAdapter(dir, config), "non_finite_weights", "adapter.safetensors", A1_DOWN, "Inf");
});

t.test("Inf weights: a fusion with -Inf in its key weights is refused (non_finite_weights)", async (t) => {
  const dir = await copyOf(t, join(FUSIONS, "dyn2"));
  const tensor = "bert.encoder.layer.0.output.adapter_fusion_layer.a1,a2.key.weight";
  await pokeFloat(join(dir, "model_adapter_fusion.safetensors"), tensor, -Infinity, 11);
  await refused(t, loadFusion(dir, config), "non_finite_weights", "model_adapter_fusion.safetensors", tensor);
});

t.test("NaN weights: a NaN in the prediction head's weights is refused (non_finite_weights)", async (t) => {
  const dir = await copyOf(t, join(FUSIONS, "dyn2"));
  await pokeFloat(join(dir, "model_head.safetensors"), "heads.dyn2.4.weight", NaN);
  await refused(t, loadFusion(dir, config), "non_finite_weights", "model_head.safetensors", "heads.dyn2.4.weight");
  await refusedChange(t, (library) => library.putFusion("dyn2", dir), "non_finite_weights", "model_head.safetensors");
});

t.test("truncated safetensors: an adapter.safetensors cut short is refused (malformed_file)", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  const file = join(dir, "adapter.safetensors");
  const size = (await readFile(file)).length;
  await truncate(file, Math.floor(size * 0.6));
  await refused(t, loadAdapter(dir, config), "malformed_file", file, /truncated|wrong size/);
  await refusedChange(t, (library) => library.putAdapter("a1", dir), "malformed_file", file);
});

t.test("truncated safetensors: a file cut inside its header is refused (malformed_file)", async (t) => {
  const dir = await copyOf(t, join(FUSIONS, "dyn2"));
  const file = join(dir, "model_adapter_fusion.safetensors");
  await truncate(file, 40);
  await refused(t, loadFusion(dir, config), "malformed_file", file);
  await truncate(file, 3);
  await refused(t, loadFusion(dir, config), "malformed_file", file);
});

t.test("malformed safetensors: a header entry without dtype/shape/data_offsets is refused (malformed_file)", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  const file = join(dir, "adapter.safetensors");
  for (const entry of [{ dtype: "F32", shape: [2] }, { dtype: "F32", data_offsets: [0, 8] }, { shape: [2], data_offsets: [0, 8] }, null, 7]) {
    const header = Buffer.from(JSON.stringify({ [A1_DOWN]: entry }));
    const bytes = Buffer.alloc(8 + header.length + 8);
    bytes.writeBigUInt64LE(BigInt(header.length), 0);
    header.copy(bytes, 8);
    await writeFile(file, bytes);
    await refused(t, loadAdapter(dir, config), "malformed_file", file, A1_DOWN);
  }
  for (const header of ["[1,2]", "null", "{not json"]) {
    const raw = Buffer.from(header);
    const bytes = Buffer.alloc(8 + raw.length);
    bytes.writeBigUInt64LE(BigInt(raw.length), 0);
    raw.copy(bytes, 8);
    await writeFile(file, bytes);
    await refused(t, loadAdapter(dir, config), "malformed_file", file);
  }
});

t.test("unsupported dtype: a float8 tensor is refused naming it (unsupported_config); integer tensors are skipped", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  const file = join(dir, "adapter.safetensors");
  const bytes = await readFile(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
  const body = bytes.subarray(8 + headerLength);
  const rewrite = async (h: object, extra = Buffer.alloc(0)) => {
    const raw = Buffer.from(JSON.stringify(h));
    const out = Buffer.alloc(8 + raw.length);
    out.writeBigUInt64LE(BigInt(raw.length), 0);
    raw.copy(out, 8);
    await writeFile(file, Buffer.concat([out, body, extra]));
  };
  const { data_offsets } = header[A1_DOWN];
  await rewrite({ ...header, [A1_DOWN]: { dtype: "F8_E4M3", shape: [data_offsets[1] - data_offsets[0]], data_offsets } });
  await refused(t, loadAdapter(dir, config), "unsupported_config", file, A1_DOWN, "F8_E4M3");
  // An int64 buffer (as older BERT checkpoints carry position_ids) is skipped, not read as a weight.
  await rewrite({ ...header, "some.position_ids": { dtype: "I64", shape: [1], data_offsets: [body.length, body.length + 8] } }, Buffer.alloc(8));
  const loaded = await loadAdapter(dir, config);
  t.equal(loaded.layers.filter(Boolean).length, config.numLayers, "the adapter still loads");
});

t.test("malformed config: adapter_config.json that is not JSON is refused (malformed_file)", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  await writeFile(join(dir, "adapter_config.json"), "{ this is not json");
  await refused(t, loadAdapter(dir, config), "malformed_file", join(dir, "adapter_config.json"));
});

// ---------------------------------------------------------------------------------------------
// Unknown or unsupported config values
// ---------------------------------------------------------------------------------------------

t.test("unsupported config value: non_linearity 'swish' is refused naming the field and value", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  await editJson(join(dir, "adapter_config.json"), (j) => (j.config.non_linearity = "swish"));
  await refused(t, loadAdapter(dir, config), "unsupported_config", "adapter_config.json", "non_linearity", "swish", "relu");
  await refusedChange(t, (library) => library.putAdapter("a1", dir), "unsupported_config", "non_linearity");
});

t.test("unsupported config value: parallel adapters, gating, a learned scaling are refused naming the field", async (t) => {
  for (const [field, value] of [
    ["is_parallel", true],
    ["use_gating", true],
    ["mh_adapter", true],
    ["residual_before_ln", false],
    ["scaling", "learned"],
  ] as const) {
    const dir = await copyOf(t, join(ADAPTERS, "a1"));
    await editJson(join(dir, "adapter_config.json"), (j) => (j.config[field] = value));
    await refused(t, loadAdapter(dir, config), "unsupported_config", "adapter_config.json", field, String(value));
  }
});

t.test("unknown config field: an adapter config field the server does not know is refused naming it", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  await editJson(join(dir, "adapter_config.json"), (j) => (j.config.frobnicate_tokens = 3));
  await refused(t, loadAdapter(dir, config), "unsupported_config", "adapter_config.json", "frobnicate_tokens");
});

t.test("unsupported config value: a fusion with residual_before true, or an unknown fusion field, is refused", async (t) => {
  const dir = await copyOf(t, join(FUSIONS, "dyn2"));
  await editJson(join(dir, "adapter_fusion_config.json"), (j) => (j.config.residual_before = true));
  await refused(t, loadFusion(dir, config), "unsupported_config", "adapter_fusion_config.json", "residual_before", "true");
  await editJson(join(dir, "adapter_fusion_config.json"), (j) => {
    j.config.residual_before = false;
    j.config.attention_type = "multihead";
  });
  await refused(t, loadFusion(dir, config), "unsupported_config", "adapter_fusion_config.json", "attention_type");
  await refusedChange(t, (library) => library.putFusion("dyn2", dir), "unsupported_config", "attention_type");
});

t.test("unsupported config value: a head type the server does not serve is refused naming it", async (t) => {
  const dir = await copyOf(t, join(FUSIONS, "dyn2"));
  await editJson(join(dir, "head_config.json"), (j) => (j.config.head_type = "question_answering"));
  await refused(t, loadFusion(dir, config), "unsupported_config", "head_config.json", "head_type", "question_answering");
});

t.test("fusion config: a fusion saved under its own name fuses the adapters its adapter_names lists", async (t) => {
  // add_adapter_fusion(..., name=...) saves the fusion's tensors under `name` and its adapters in adapter_names.
  const dir = await copyOf(t, join(FUSIONS, "dyn2"));
  await editJson(join(dir, "adapter_fusion_config.json"), (j) => (j.adapter_names = ["a2", "a1"]));
  t.same((await loadFusion(dir, config)).adapters, ["a2", "a1"]);
  await editJson(join(dir, "adapter_fusion_config.json"), (j) => delete j.adapter_names);
  t.same((await loadFusion(dir, config)).adapters, ["a1", "a2"], "older saves: the adapters from the comma-separated name");
});

t.test("malformed fusion config: adapter_names that is no list of names, or lists an adapter twice, is refused", async (t) => {
  const dir = await copyOf(t, join(FUSIONS, "dyn2"));
  for (const names of ["a1,a2", [], ["a1", 2]]) {
    await editJson(join(dir, "adapter_fusion_config.json"), (j) => (j.adapter_names = names));
    await refused(t, loadFusion(dir, config), "malformed_file", "adapter_fusion_config.json", "adapter_names");
  }
  await editJson(join(dir, "adapter_fusion_config.json"), (j) => (j.adapter_names = ["a1", "a1"]));
  await refused(t, loadFusion(dir, config), "malformed_file", "adapter_fusion_config.json", "twice");
  await editJson(join(dir, "adapter_fusion_config.json"), (j) => {
    delete j.adapter_names;
    j.name = "a1,a1";
  });
  await refused(t, loadFusion(dir, config), "malformed_file", "adapter_fusion_config.json", "twice");
});

t.test("exact names: another module's tensors are skipped, a tensor of this module the computation lacks is refused", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  const file = join(dir, "adapter.safetensors");
  const original = await readFile(file);
  const renamed = async (to: string) => {
    const headerLength = Number(original.readBigUInt64LE(0));
    const header = original.subarray(8, 8 + headerLength).toString("utf8").replace(`"${A1_DOWN}"`, `"${to}"`);
    const raw = Buffer.from(header);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(raw.length));
    await writeFile(file, Buffer.concat([length, raw, original.subarray(8 + headerLength)]));
  };
  await renamed(A1_DOWN.replace(".adapters.a1.", ".adapters.a10."));
  await refused(t, loadAdapter(dir, config), "malformed_file", file, "layer 1 lacks adapter_down.0.weight");
  await renamed(A1_DOWN.replace("adapter_down.0", "adapter_norm_before"));
  await refused(t, loadAdapter(dir, config), "unsupported_config", file, "unexpected tensor", "adapter_norm_before", "'a1'");
  await renamed(A1_DOWN.replace(".output.", ".attention.output."));
  await refused(t, loadAdapter(dir, config), "unsupported_config", file, "unexpected tensor", "attention.output.adapters.a1");
});

t.test("exact names: an adapter-transformers 1.x save (layer_text_task_adapters) loads as adapters renames it", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  const file = join(dir, "adapter.safetensors");
  const bytes = await readFile(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = Buffer.from(bytes.subarray(8, 8 + headerLength).toString("utf8").replaceAll(".output.adapters.a1.", ".output.layer_text_task_adapters.a1."));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  await writeFile(file, Buffer.concat([length, header, bytes.subarray(8 + headerLength)]));
  const [legacy, current] = await Promise.all([loadAdapter(dir, config), loadAdapter(join(ADAPTERS, "a1"), config)]);
  t.ok(legacy.layers.every((l, i) => l!.downWeight.data.every((v, j) => v === current.layers[i]!.downWeight.data[j])), "the same weights");
});

t.test("exact names: a file with no tensor of the module its config names is refused naming the module", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  await editJson(join(dir, "adapter_config.json"), (j) => (j.name = "b1"));
  await refused(t, loadAdapter(dir, config), "malformed_file", "adapter.safetensors", "no tensors of adapter 'b1'", ".adapters.b1.");
  const fusion = await copyOf(t, join(FUSIONS, "dyn2"));
  await editJson(join(fusion, "head_config.json"), (j) => (j.name = "dyn"));
  await refused(t, loadFusion(fusion, config), "malformed_file", "model_head.safetensors", "no tensors of head 'dyn'", "heads.dyn.");
});

t.test("unsupported config value: a fusion 'value' that is not a boolean is refused", async (t) => {
  const dir = await copyOf(t, join(FUSIONS, "dyn2"));
  await editJson(join(dir, "adapter_fusion_config.json"), (j) => (j.config.value = "yes"));
  await refused(t, loadFusion(dir, config), "unsupported_config", "adapter_fusion_config.json", "value", "yes");
});

t.test("control: non_linearity 'ReLU' is accepted (the adapters library lowercases it) and loads the same weights", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  await editJson(join(dir, "adapter_config.json"), (j) => (j.config.non_linearity = "ReLU"));
  const [upper, lower] = await Promise.all([loadAdapter(dir, config), loadAdapter(join(ADAPTERS, "a1"), config)]);
  t.same(upper.layers, lower.layers);
});

// ---------------------------------------------------------------------------------------------
// A fusion naming an adapter that is not loaded
// ---------------------------------------------------------------------------------------------

t.test("unknown adapter: a library.json with fusion dyn2 (a1,a2) but without adapter a2 does not open", async (t) => {
  const root = await libraryOf(t, { a1: join(ADAPTERS, "a1") }, { dyn2: join(FUSIONS, "dyn2") });
  let library: AdapterLibrary | undefined;
  await refused(t, AdapterLibrary.open(root, config).then((l) => (library = l)), "unknown_adapter", "dyn2", "'a2'");
  t.equal(library, undefined, "no library object exists");
});

t.test("unknown adapter: putting a fusion over adapters the library does not hold changes nothing", async (t) => {
  await refusedChange(t, (library) => library.putFusion("dyn5", join(FUSIONS, "dyn5")), "unknown_adapter", "dyn5", /'a[345]'/);
});

// ---------------------------------------------------------------------------------------------
// And the healthy library, so the refusals above are not refusing everything
// ---------------------------------------------------------------------------------------------

t.test("control: the same library with every module present opens and serves all routes", async (t) => {
  const root = await libraryOf(t, { a1: join(ADAPTERS, "a1"), a2: join(ADAPTERS, "a2") }, { dyn2: join(FUSIONS, "dyn2") });
  const library = await AdapterLibrary.open(root, config);
  t.same([...library.state.routes.keys()].sort(), ["a1", "a2", "dyn2"]);
});

// ---------------------------------------------------------------------------------------------
// Values that are valid JSON but cannot be computed with: refused before anything is built
// ---------------------------------------------------------------------------------------------

t.test("a scaling whose product overflows float32 is refused (non_finite_weights), not served as Inf", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  await editJson(join(dir, "adapter_config.json"), (j) => (j.config.scaling = 1e300));
  await refused(t, loadAdapter(dir, config), "non_finite_weights", "adapter_config.json", "scaling 1e+300", "adapter_up");
  await editJson(join(dir, "adapter_config.json"), (j) => (j.config.scaling = 2));
  t.ok(await loadAdapter(dir, config), "a scaling of 2 loads");
});

t.test("num_labels that is huge, fractional or not a number is refused before any label is built", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  for (const numLabels of [1e10, 3e7, 2.5, 0, "2", null]) {
    await editJson(join(dir, "head_config.json"), (j) => (j.config.num_labels = numLabels));
    await refused(t, loadAdapter(dir, config), "malformed_file", "head_config.json", "num_labels must be an integer from 1 to 10000");
  }
});

t.test("label2id giving two labels one name, two names one id, or a fractional id is refused", async (t) => {
  const dir = await copyOf(t, join(ADAPTERS, "a1"));
  const cases: [Record<string, unknown>, string][] = [
    [{ LABEL_1: 0 }, "two labels are named 'LABEL_1'"],
    [{ A: 0, B: 0 }, "maps both 'A' and 'B' to 0"],
    [{ A: 0.5, B: 1 }, "maps 'A' to 0.5, not an integer in 0..1"],
    [{ A: 0, B: "1" }, "maps 'B' to \"1\""],
  ];
  for (const [label2id, mention] of cases) {
    await editJson(join(dir, "head_config.json"), (j) => (j.config.label2id = label2id));
    await refused(t, loadAdapter(dir, config), "malformed_file", "head_config.json", mention);
  }
  await editJson(join(dir, "head_config.json"), (j) => (j.config.label2id = { B: 1, A: 0 }));
  t.same((await loadAdapter(dir, config)).head?.labels, ["A", "B"], "a complete label2id names every label by its id");
});
