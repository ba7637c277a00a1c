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
 * A swap's route assembly runs in the layout thread. The test holds that thread at the start of
 * the assembly (layoutHold) and, while it is held, asks the server for /health, /metrics and
 * predictions: answers to those prove that the event loop and the engine are free during a swap,
 * by the order of events alone.
 */
t.test("while a swap's routes are being assembled, /health, /metrics and predictions are answered", async (t) => {
  const root = await writableLibrary(t);
  const config: ServerConfig = { ...DEFAULT_CONFIG, library: root, host: "127.0.0.1", port: 0, threads: 1, logLevel: "silent", adminToken: TOKEN };
  const hold = new Int32Array(new SharedArrayBuffer(8));
  Atomics.store(hold, 0, 1); // open while the library loads
  const app = await buildApp(config);
  t.teardown(() => app.close());
  await app.listen({ host: config.host, port: 0 });
  const engine = await EngineThread.start(
    { backboneDir: TINY_BACKBONE, device: "cpu", precision: "float32", threads: 1, slots: 4, layoutHold: hold },
    app.metrics,
  );
  const library = await AdapterLibrary.open(root, engine.backbone, engine);
  const tokenizer = await TextTokenizer.load(TINY_BACKBONE, 64);
  app.serving.attach({ library, engine, tokenizer, maxSeqLen: 64, precision: { precision: "float32", reason: "--precision float32" }, close: () => undefined });
  const address = app.server.address();
  if (!address || typeof address === "string") throw new Error("no TCP address");
  const url = `http://127.0.0.1:${address.port}`;
  const before = await routeVersions(url);
  // Every route resident, so the swap lays out the routes it replaces before it publishes them.
  for (const name of Object.keys(before)) await post(`${url}/v1/predict/${name}`, { inputs: ["warm"] });

  Atomics.store(hold, 0, 0);
  Atomics.store(hold, 1, 0);
  const events: string[] = [];
  const path = await stage(root, "adapters/a2", "a2-v2", "adapter.safetensors", scaleFloats(1.3));
  const swap = admin(url, "PUT", "/v1/admin/adapters/a2", { path }).then((answer) => {
    events.push("swap answered");
    return answer;
  });
  // The layout thread sets hold[1] when it has reached the held assembly.
  while (Atomics.load(hold, 1) === 0) await turn();
  events.push("assembly started");

  const health = await request(`${url}/health`);
  events.push(`health ${health.status}`);
  const metrics = await request(`${url}/metrics`);
  events.push(`metrics ${metrics.status}`);
  const predicted = await post(`${url}/v1/predict/dyn2`, { inputs: ["served during the swap"] });
  events.push(`predict ${predicted.status}`);
  t.equal(predicted.body.version, before.dyn2, "answered by the version still live");

  Atomics.store(hold, 0, 1);
  Atomics.notify(hold, 0);
  const answer = await swap;
  t.equal(answer.status, 200, "the swap completes once assembly resumes");
  t.same(events, ["assembly started", "health 200", "metrics 200", "predict 200", "swap answered"]);
  const after = await routeVersions(url);
  t.not(after.dyn2, before.dyn2, "dyn2 fuses a2, so it was assembled anew");
  t.not(after.a2, before.a2);
  t.match(metrics.text, /fusion_route_assembly_seconds_count \d+/, "assembly time is measured");
});
