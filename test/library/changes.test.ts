import { readFile, readdir, realpath } from "node:fs/promises";
import { join } from "node:path";
import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { ConflictError, ModelLoadError, BadRequestError } from "../../src/errors.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { ENGINE_FIXTURES, scaleFloats, stage, TINY_BACKBONE, writableLibrary } from "../fixtures.js";

const backbone = await loadBackbone(TINY_BACKBONE);

/** A retrained-looking copy of an adapter: same files, every weight scaled. */
async function scaledAdapter(root: string, name: string, factor: number): Promise<string> {
  return join(root, await stage(root, `adapters/${name}`, `${name}-x${factor}`, "adapter.safetensors", scaleFloats(factor)));
}

t.test("replacing an adapter publishes a new version of every route that uses it, and only those", async (t) => {
  const root = await writableLibrary(t);
  const library = await AdapterLibrary.open(root, backbone.config);
  const before = library.state;
  const result = await library.putAdapter("a1", await scaledAdapter(root, "a1", 1.5));
  t.equal(result.folder, "2");
  t.equal(result.previousFolder, "1");
  t.same([...result.routes].sort(), ["a1", "dyn2", "dyn5", "static2", "static5"]);
  t.not(library.route("a1").version, before.routes.get("a1")!.version);
  t.equal(library.route("a2"), before.routes.get("a2"), "an untouched route is the same object");
  t.same(await readdir(join(root, "adapters", "a1")), ["1", "2"]);
});

t.test("a restart serves exactly what was live, and rollback works after it", async (t) => {
  const root = await writableLibrary(t);
  const library = await AdapterLibrary.open(root, backbone.config);
  const original = library.route("dyn2").version;
  await library.putAdapter("a2", await scaledAdapter(root, "a2", 0.5));
  const swapped = library.route("dyn2").version;
  t.not(swapped, original);

  const restarted = await AdapterLibrary.open(root, backbone.config);
  t.equal(restarted.route("dyn2").version, swapped);
  await restarted.rollback("adapters", "a2");
  t.equal(restarted.route("dyn2").version, original);
  const again = await AdapterLibrary.open(root, backbone.config);
  t.equal(again.route("dyn2").version, original);
  await again.rollback("adapters", "a2");
  t.equal(again.route("dyn2").version, swapped, "a second rollback returns to the newer version");
});

t.test("a refused change leaves the live state and the files untouched", async (t) => {
  const root = await writableLibrary(t);
  const library = await AdapterLibrary.open(root, backbone.config);
  const state = library.state;
  const manifest = await readFile(join(root, "library.json"), "utf8");
  await t.rejects(library.putAdapter("a1", join(ENGINE_FIXTURES, "foreign", "hidden48")), ModelLoadError);
  await t.rejects(library.putAdapter("a1", join(ENGINE_FIXTURES, "fusions", "dyn2")), ModelLoadError, "a fusion is not an adapter");
  await t.rejects(library.putFusion("dyn2", join(ENGINE_FIXTURES, "adapters", "a1")), ModelLoadError, "an adapter is not a fusion");
  t.equal(library.state, state);
  t.equal(await readFile(join(root, "library.json"), "utf8"), manifest);
  t.same(await readdir(join(root, "adapters", "a1")), ["1"]);
});

t.test("an adapter in use by a fusion cannot be deleted; a fusion can, then the adapter", async (t) => {
  const root = await writableLibrary(t);
  const library = await AdapterLibrary.open(root, backbone.config);
  await t.rejects(library.remove("adapters", "a3"), ConflictError);
  await library.remove("fusions", "dyn5");
  await library.remove("fusions", "static5");
  await library.remove("adapters", "a3");
  t.notOk(library.state.routes.has("a3"));
  t.notOk(library.state.routes.has("dyn5"));
  const restarted = await AdapterLibrary.open(root, backbone.config);
  t.notOk(restarted.state.adapters.has("a3"));
});

t.test("rollback without a previous version is a conflict", async (t) => {
  const root = await writableLibrary(t);
  const library = await AdapterLibrary.open(root, backbone.config);
  await t.rejects(library.rollback("fusions", "dyn2"), ConflictError);
});

t.test("operator paths must stay inside the library root", async (t) => {
  const root = await writableLibrary(t);
  const library = await AdapterLibrary.open(root, backbone.config);
  for (const bad of ["/etc", "../x", "adapters/../../x", "adapters/a1/../../.."]) {
    await t.rejects(library.resolveInside(bad), BadRequestError, bad);
  }
  t.equal(await library.resolveInside("adapters/a1/1"), join(await realpath(root), "adapters", "a1", "1"));
});
