import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import { DEFAULT_CONFIG } from "../../src/config.js";
import { buildApp } from "../../src/server/app.js";
import { assertError } from "../error-shape.js";
import { post, request, startServer, TINY_LIBRARY } from "./harness.js";
import { parsePrometheusText, sampleValue } from "./prometheus.js";

const ROOT = join(import.meta.dirname, "..", "..");
const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
const KEY = "info-test-api-key-0123";

t.test("with --precision auto, /info says what the probe chose and why", async (t) => {
  const { url } = await startServer(t, { precision: "auto" });
  const info = (await request(`${url}/info`)).body;
  t.ok(["float32", "int8"].includes(info.precision), `chose ${info.precision}`);
  t.match(info.precision_reason, /^auto: /, info.precision_reason);
});

t.test("/info names the build, the backbone, the limits and the routes", async (t) => {
  const { url } = await startServer(t, { commit: "0123abc" });
  const info = await request(`${url}/info`);
  t.equal(info.status, 200);
  t.same(info.body, {
    name: "fusion-serve",
    version,
    commit: "0123abc",
    status: "ready",
    device: "cpu",
    precision: "float32",
    precision_reason: "--precision float32",
    library: TINY_LIBRARY,
    backbone: { path: "../engine/backbone", model_type: "bert", hidden_size: 64, layers: 3, max_positions: 64 },
    max_length: 64,
    routes: ["a1", "a2", "a3", "a4", "a5", "dyn2", "dyn5", "multilabel", "static2", "static5", "tagger"],
  });
});

t.test("/info while the library loads: what is known, without a commit when none was given", async (t) => {
  const app = await buildApp({ ...DEFAULT_CONFIG, library: TINY_LIBRARY, logLevel: "silent" });
  t.teardown(() => app.close());
  const answer = await app.inject({ method: "GET", url: "/info" });
  t.equal(answer.statusCode, 200);
  t.same(answer.json(), { name: "fusion-serve", version, status: "loading", device: "cpu", precision: "float32", library: TINY_LIBRARY, routes: [] });
});

t.test("--version prints the name and version and exits 0", async (t) => {
  const run = spawnSync(process.execPath, ["--import", "tsx", "src/main.ts", "--version"], { cwd: ROOT, encoding: "utf8", timeout: 30_000, env: { ...process.env, FUSION_COMMIT: "" } });
  t.equal(run.status, 0);
  t.equal(run.stdout, `fusion-serve ${version}\n`);
  const withCommit = spawnSync(process.execPath, ["--import", "tsx", "src/main.ts", "--version"], { cwd: ROOT, encoding: "utf8", timeout: 30_000, env: { ...process.env, FUSION_COMMIT: "0123abc" } });
  t.equal(withCommit.stdout, `fusion-serve ${version} (commit 0123abc)\n`);
});

t.test("fusion_build_info carries the version, the commit and the Node.js version", async (t) => {
  const { url } = await startServer(t, { commit: "0123abc" });
  const m = parsePrometheusText((await request(`${url}/metrics`)).text);
  t.equal(sampleValue(m, "fusion_build_info", { version, commit: "0123abc", node: process.version }), 1);
  const unknown = await startServer(t);
  t.equal(sampleValue(parsePrometheusText((await request(`${unknown.url}/metrics`)).text), "fusion_build_info", { version, commit: "unknown" }), 1);
});

t.test("--api-key: predictions and what describes them need the key; the probes and /metrics stay open", async (t) => {
  const { url } = await startServer(t, { apiKey: KEY });
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  assertError(t, await post(`${url}/v1/predict/a1`, { inputs: "x" }), 401, "unauthorized");
  assertError(t, await post(`${url}/v1/predict/a1`, { inputs: "x" }, bearer(`${KEY}x`)), 401, "unauthorized");
  assertError(t, await post(`${url}/v1/predict/a1`, { inputs: "x" }, { authorization: KEY }), 401, "unauthorized");
  assertError(t, await request(`${url}/v1/fusions`), 401, "unauthorized");
  assertError(t, await request(`${url}/info`), 401, "unauthorized");
  const answer = await post(`${url}/v1/predict/a1`, { inputs: "x" }, bearer(KEY));
  t.equal(answer.status, 200);
  t.equal(answer.body.predictions.length, 1);
  t.equal((await post(`${url}/v1/predict/a1`, { inputs: "x" }, { authorization: `bearer ${KEY}` })).status, 200, "the scheme name is case-insensitive");
  t.equal((await request(`${url}/v1/fusions`, { headers: bearer(KEY) })).status, 200);
  t.equal((await request(`${url}/info`, { headers: bearer(KEY) })).status, 200);
  t.equal((await request(`${url}/health`)).status, 200);
  t.equal((await request(`${url}/ready`)).status, 200);
  const metrics = await request(`${url}/metrics`);
  t.equal(metrics.status, 200);
  t.match(metrics.text, /^fusion_requests_rejected_total\{reason="unauthorized"\} 5$/m);

  const document = (await request(`${url}/docs/json`)).body;
  t.same(document.paths["/v1/predict/{fusion}"].post.security, [{ apiKey: [] }]);
  t.ok(document.paths["/v1/predict/{fusion}"].post.responses["401"], "401 documented");
  t.notOk(document.paths["/health"].get.security, "the probes need no key");
});

t.test("--api-key-metrics true: /metrics needs the key too", async (t) => {
  const { url } = await startServer(t, { apiKey: KEY, apiKeyMetrics: true });
  assertError(t, await request(`${url}/metrics`), 401, "unauthorized");
  t.equal((await request(`${url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).status, 200);
  t.equal((await request(`${url}/health`)).status, 200);
});

t.test("without --api-key, predictions need no key", async (t) => {
  const { url } = await startServer(t);
  t.equal((await post(`${url}/v1/predict/a1`, { inputs: "x" })).status, 200);
});
