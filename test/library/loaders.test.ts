import { readFileSync } from "node:fs";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FusionEngine } from "../../src/engine/engine.js";
import type { HeadOutput } from "../../src/engine/heads.js";
import { routeFeeds } from "../../src/engine/layout.js";
import { padBatch } from "../../src/engine/packing.js";
import { readout } from "../../src/engine/readout.js";
import { ModelLoadError } from "../../src/errors.js";
import { loadAdapter, loadFusion, type AdapterModule } from "../../src/library/adapterhub.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { parseSafetensors } from "../../src/formats/safetensors.js";
import { FIXTURES, TINY_BACKBONE, maxAbsDiff } from "../fixtures.js";

/**
 * Save dirs as the `adapters` library writes them (python/fixtures/make_loader_fixtures.py), each
 * served from a library and compared with the logits of a model that loaded the same dirs with
 * the library's own loaders:
 * - prefix: a head file holding the heads of `xy` and `xyz-dyn` beside x's own, a fusion file of
 *   `x,y` holding `x,y,z` too;
 * - renamed: dirs served under other names (x's dir as `z` and z's as `x`, fusion `xy` as `pair`);
 * - bin: the same saves as PyTorch .bin files;
 * - both: safetensors and .bin side by side, with different weights.
 */

const TOLERANCE = 1e-4;
const LOADERS = join(FIXTURES, "loaders");

interface Scene {
  adapters: Record<string, string>;
  fusions: Record<string, string>;
}
interface Case {
  name: string;
  scene: string;
  route: string;
  file: string;
}
const { scenes, cases } = JSON.parse(readFileSync(join(LOADERS, "scenes.json"), "utf8")) as {
  scenes: Record<string, Scene>;
  cases: Case[];
};

const backbone = await loadBackbone(TINY_BACKBONE);
const d = backbone.config.hiddenSize;
const engine = await FusionEngine.create(backbone, { device: "cpu", threads: 1, variant: "fused" });
t.teardown(() => engine.close());

/** A library root holding the scene's dirs as version 1 of the names library.json serves them under. */
async function libraryOf(scene: Scene): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "loaders-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  for (const kind of ["adapters", "fusions"] as const) {
    for (const [name, dir] of Object.entries(scene[kind])) {
      await mkdir(join(root, kind, name), { recursive: true });
      await cp(join(LOADERS, dir), join(root, kind, name, "1"), { recursive: true });
    }
  }
  const versions = (m: Record<string, string>) => Object.fromEntries(Object.keys(m).map((n) => [n, "1"]));
  await writeFile(join(root, "library.json"), JSON.stringify({ backbone: TINY_BACKBONE, adapters: versions(scene.adapters), fusions: versions(scene.fusions) }));
  return root;
}

/** The inputs (int64 ids and mask, as unpadded sequences) and the logits of one case. */
function expected(file: string): { sequences: number[][]; logits: Float32Array } {
  const bytes = readFileSync(join(LOADERS, file));
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
  const int64 = (name: string): bigint[][] => {
    const { shape, data_offsets: [begin] } = header[name];
    const at = 8 + headerLength + begin;
    return Array.from({ length: shape[0] }, (_, b) => Array.from({ length: shape[1] }, (_, i) => bytes.readBigInt64LE(at + 8 * (b * shape[1] + i))));
  };
  const mask = int64("attention_mask");
  const sequences = int64("input_ids").map((row, b) => row.filter((_, i) => mask[b][i] === 1n).map(Number));
  return { sequences, logits: parseSafetensors(bytes, file).get("logits")!.data };
}

const libraries = new Map<string, Promise<AdapterLibrary>>();
function library(scene: string): Promise<AdapterLibrary> {
  if (!libraries.has(scene)) libraries.set(scene, libraryOf(scenes[scene]).then((root) => AdapterLibrary.open(root, backbone.config)));
  return libraries.get(scene)!;
}

for (const c of cases) {
  t.test(`${c.scene}: route ${c.route} matches the logits of the adapters library`, async (t) => {
    const route = (await library(c.scene)).route(c.route);
    const { sequences, logits } = expected(c.file);
    const batch = padBatch(sequences);
    const outputs = readout(route.head, await engine.run(batch, await routeFeeds(backbone.config, route)), batch, d, false);
    const C = route.head.labels.length;
    t.equal(logits.length, sequences.length * C, `the head has the library's ${C} labels`);
    const diff = Math.max(...outputs.map((o, b) => maxAbsDiff((o.output as HeadOutput).logits, logits.subarray(b * C, (b + 1) * C))));
    t.ok(diff <= TOLERANCE, `logits within ${TOLERANCE} (max |diff| ${diff.toExponential(2)})`);
  });
}

t.test("prefix: only the module the config names is read from a file that holds others", async (t) => {
  const x = await loadAdapter(join(LOADERS, "prefix/adapters/x"), backbone.config);
  t.same(x.head?.labels, ["X_0", "X_1"], "x's head, not xy's (3 labels) or xyz-dyn's (4)");
  const xy = await loadFusion(join(LOADERS, "prefix/fusions/xy"), backbone.config);
  t.equal(xy.kind, "static", "fusion x,y (static), not x,y,z (dynamic)");
  t.same(xy.adapters, ["x", "y"]);
  t.same(xy.head.labels, ["XY_0", "XY_1", "XY_2"]);
});

t.test("renamed: a dir is served under the manifest's name, and a fusion fuses the adapters served under its names", async (t) => {
  const state = (await library("renamed")).state;
  t.equal(state.adapters.get("x")!.name, "x", "z's dir served as x");
  t.same(state.routes.get("pair")!.adapters.map((a) => a.name), ["x", "y"]);
  t.equal(state.routes.get("pair")!.adapters[0], state.adapters.get("x"), "the fusion's x is the adapter served as x");
});

t.test("both: the safetensors file is read where a dir also holds a .bin", async (t) => {
  const dir = join(LOADERS, "both/adapters/x");
  const both = await loadAdapter(dir, backbone.config);
  const root = await mkdtemp(join(tmpdir(), "loaders-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  for (const f of ["adapter_config.json", "head_config.json", "pytorch_adapter.bin", "pytorch_model_head.bin"]) await cp(join(dir, f), join(root, f));
  const downWeight = (m: AdapterModule) => m.layers[0]!.downWeight.data;
  const binOnly = await loadAdapter(root, backbone.config);
  t.ok(maxAbsDiff(downWeight(both), downWeight(binOnly)) > 1e-3, "the two forms differ");
  for (const f of ["adapter.safetensors", "model_head.safetensors"]) await cp(join(dir, f), join(root, f));
  t.equal(maxAbsDiff(downWeight(await loadAdapter(root, backbone.config)), downWeight(both)), 0, "adding the safetensors file switches to it");
});

t.test("a .bin holding anything but tensors is refused on put, and the library does not change", async (t) => {
  const lib = await library("bin");
  const state = lib.state;
  for (const file of ["os_system.bin", "tensor_subclass.bin", "object.bin"]) {
    const dir = await mkdtemp(join(tmpdir(), "loaders-unsafe-"));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    await cp(join(LOADERS, "bin/adapters/x"), dir, { recursive: true });
    await cp(join(LOADERS, "unsafe", file), join(dir, "pytorch_adapter.bin"));
    await t.rejects(lib.putAdapter("x", dir), { constructor: ModelLoadError, code: "unsupported_config", kind: "unloadable_model" }, `${file} refused`);
  }
  t.equal(lib.state, state, "the live state is the very same object");
});
