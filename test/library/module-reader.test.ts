import t from "tap";
import { join } from "node:path";
import { loadBackbone } from "../../src/engine/backbone.js";
import { loadAdapter } from "../../src/library/adapterhub.js";
import { ModuleReader } from "../../src/library/module-reader.js";
import { ModelLoadError } from "../../src/errors.js";
import { TINY_BACKBONE } from "../fixtures.js";
import { TINY_LIBRARY } from "../server/harness.js";

const A1 = join(TINY_LIBRARY, "adapters", "a1", "1");

t.test("a module read in the reader's thread equals one read here, its tensors in shared memory", async (t) => {
  const { config } = await loadBackbone(TINY_BACKBONE);
  const reader = new ModuleReader(config);
  const [there, here] = await Promise.all([reader.adapter(A1, "a1"), loadAdapter(A1, config, "a1")]);
  t.equal(there.version, here.version);
  const down = there.layers[0]!.downWeight.data;
  t.ok(down.buffer instanceof SharedArrayBuffer, "shared with the engine's threads");
  t.same(Array.from(down), Array.from(here.layers[0]!.downWeight.data));
});

t.test("a read's errors arrive as they were raised: a ModelLoadError with its code", async (t) => {
  const { config } = await loadBackbone(TINY_BACKBONE);
  await t.rejects(new ModuleReader(config).adapter(join(TINY_LIBRARY, "adapters"), "x"), { constructor: ModelLoadError, code: "missing_file" });
});

t.test("a read beyond its budget is refused with too_costly, and refused again on a fresh thread", async (t) => {
  const { config } = await loadBackbone(TINY_BACKBONE);
  const hasty = new ModuleReader(config, 1);
  await t.rejects(hasty.adapter(A1, "a1"), { constructor: ModelLoadError, code: "too_costly", message: /took longer than 0.001 s/ });
  await t.rejects(hasty.adapter(A1, "a1"), { code: "too_costly" }, "still refused within 1 ms");
  const patient = new ModuleReader(config);
  t.equal((await patient.adapter(A1, "a1")).name, "a1", "a reader with time to spare reads it");
});
