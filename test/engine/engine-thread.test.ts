import type { Worker } from "node:worker_threads";
import t from "tap";
import { EngineThread } from "../../src/engine/engine-thread.js";
import { padBatch } from "../../src/engine/packing.js";
import { loadBackbone } from "../../src/engine/backbone.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { TINY_LIBRARY } from "../server/harness.js";
import { TINY_BACKBONE } from "../fixtures.js";

t.test("an engine thread that stops unexpectedly refuses passes with 503 and tells its listeners once", async (t) => {
  const engine = await EngineThread.start({ backboneDir: TINY_BACKBONE, device: "cpu", precision: "float32", threads: 1, slots: 2, directSlots: 2 });
  t.teardown(() => engine.close());
  const library = await AdapterLibrary.open(TINY_LIBRARY, (await loadBackbone(TINY_BACKBONE)).config, engine);
  const route = library.route("a1");
  const failures: string[] = [];
  engine.onFailure((err) => failures.push(err.message));
  // The engine's worker is private: reach it the way a crash would, from outside the API.
  await (engine as unknown as { engine: Worker }).engine.terminate();
  await t.rejects(engine.run(padBatch([[2, 5, 3]]), [{ route, inputs: 1, explain: false }]), { kind: "unavailable", code: "engine_unavailable" });
  t.equal(failures.length, 1, "listeners told once");
  t.match(failures[0], /exited/);
});

t.test("closing the engine is not a failure", async (t) => {
  const engine = await EngineThread.start({ backboneDir: TINY_BACKBONE, device: "cpu", precision: "float32", threads: 1, slots: 2, directSlots: 2 });
  let failed = false;
  engine.onFailure(() => (failed = true));
  await engine.close();
  t.notOk(failed);
});
