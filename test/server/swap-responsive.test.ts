import { setImmediate as turn } from "node:timers/promises";
import t from "tap";
import { DEFAULT_CONFIG, type ServerConfig } from "../../src/config.js";
import { EngineThread } from "../../src/engine/engine-thread.js";
import { TextTokenizer } from "../../src/engine/tokenizer.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { buildApp } from "../../src/server/app.js";
import { admin, routeVersions, scaleFloats, stage, TOKEN, writableLibrary } from "../admin/admin-library.js";
import { TINY_BACKBONE } from "../fixtures.js";
import { post, request } from "./harness.js";

/**
 * A swap lays out the routes it replaces in the layout thread, in the background. The test holds
 * that thread at the start of the layout (layoutHold) and, while it is held, sees the swap answered
 * and asks the server for /health, /metrics and predictions: answers to those prove that neither
 * the admin API, nor the event loop, nor the engine waits for a layout, by the order of events alone.
 */
t.test("a swap answers before the routes it replaces are laid out; meanwhile /health, /metrics and predictions are answered", async (t) => {
  const root = await writableLibrary(t);
  const config: ServerConfig = { ...DEFAULT_CONFIG, library: root, host: "127.0.0.1", port: 0, threads: 1, logLevel: "silent", adminToken: TOKEN };
  const hold = new Int32Array(new SharedArrayBuffer(8));
  Atomics.store(hold, 0, 1); // open while the library loads
  const app = await buildApp(config);
  t.teardown(() => app.close());
  await app.listen({ host: config.host, port: 0 });
  const engine = await EngineThread.start(
    { backboneDir: TINY_BACKBONE, device: "cpu", precision: "float32", threads: 1, slots: 4, directSlots: 2, layoutHold: hold },
    app.metrics,
  );
  const library = await AdapterLibrary.open(root, engine.backbone, engine);
  const tokenizer = await TextTokenizer.load(TINY_BACKBONE, 64);
  app.serving.attach({ library, engine, tokenizer, maxSeqLen: 64, precision: { precision: "float32", reason: "--precision float32" }, close: () => library.close() });
  const address = app.server.address();
  if (!address || typeof address === "string") throw new Error("no TCP address");
  const url = `http://127.0.0.1:${address.port}`;
  const before = await routeVersions(url);
  // dyn2 resident (laid out in the background after its first requests), so the swap lays it out anew.
  while (engine.formOf(library.route("dyn2")) !== "folded") await post(`${url}/v1/predict/dyn2`, { inputs: ["warm"] });

  Atomics.store(hold, 0, 0);
  Atomics.store(hold, 1, 0);
  const events: string[] = [];
  const path = await stage(root, "adapters/a2", "a2-v2", "adapter.safetensors", scaleFloats(1.3));
  const swap = admin(url, "PUT", "/v1/admin/adapters/a2", { path });
  const answer = await swap;
  events.push(`swap ${answer.status}`);
  // The layout thread sets hold[1] when it has reached the held layout.
  while (Atomics.load(hold, 1) === 0) await turn();
  events.push("layout held");

  const health = await request(`${url}/health`);
  events.push(`health ${health.status}`);
  const metrics = await request(`${url}/metrics`);
  events.push(`metrics ${metrics.status}`);
  const predicted = await post(`${url}/v1/predict/dyn2`, { inputs: ["served during the layout"] });
  events.push(`predict ${predicted.status}`);
  t.same(events, ["swap 200", "layout held", "health 200", "metrics 200", "predict 200"]);
  t.not(predicted.body.version, before.dyn2, "dyn2 fuses a2: answered by its new version, unfolded, while its layout waits");
  t.equal(engine.formOf(library.route("dyn2")), "direct");

  Atomics.store(hold, 0, 1);
  Atomics.notify(hold, 0);
  while (engine.formOf(library.route("dyn2")) !== "folded") await turn();
  const after = await request(`${url}/metrics`);
  t.match(after.text, /fusion_route_layouts_total\{cause="replacement"\} 1/, "laid out once the layout thread resumes, as a replacement");
  t.match(after.text, /fusion_pass_slots_total\{form="direct"\} [1-9]/, "passes served routes unfolded");
});
