import t from "tap";
import { assertError } from "../error-shape.js";
import { DEFAULT_CONFIG } from "../../src/config.js";
import { buildApp } from "../../src/server/app.js";
import { post, request, startServer, TINY_LIBRARY } from "./harness.js";

const { url } = await startServer(t, { maxInputs: 4, maxInputChars: 200, maxBodyBytes: 2048 });
const predict = (route: string, body: unknown, headers?: Record<string, string>) => post(`${url}/v1/predict/${route}`, body, headers);

t.test("health, readiness and the route list", async (t) => {
  t.same((await request(`${url}/health`)).body, { status: "ok" });
  t.same((await request(`${url}/ready`)).body, { status: "ready" });
  const { status, body } = await request(`${url}/v1/fusions`);
  t.equal(status, 200);
  const byName = Object.fromEntries(body.fusions.map((f: { name: string }) => [f.name, f]));
  t.same(Object.keys(byName).sort(), ["a1", "a2", "a3", "a4", "a5", "dyn2", "dyn5", "multilabel", "static2", "static5", "tagger"]);
  t.match(byName.dyn5, { kind: "fusion", fusion_type: "dynamic", adapters: ["a1", "a2", "a3", "a4", "a5"], head: "classification" });
  t.match(byName.a1, { kind: "adapter", adapters: ["a1"], labels: ["A1_0", "A1_1"] });
  t.equal(byName.a1.fusion_type, undefined);
  t.match(byName.tagger, { head: "tagging" });
  t.match(byName.multilabel, { head: "multilabel_classification" });
  t.match(byName.dyn2.version, /^[0-9a-f]{12}$/);
});

t.test("predict one text", async (t) => {
  const { status, body } = await predict("dyn2", { inputs: "a quick test" });
  t.equal(status, 200);
  t.equal(body.fusion, "dyn2");
  t.match(body.version, /^[0-9a-f]{12}$/);
  t.equal(body.predictions.length, 1);
  const [p] = body.predictions;
  t.same(Object.keys(p.scores), ["DYN2_0", "DYN2_1", "DYN2_2"]);
  const total = Object.values<number>(p.scores).reduce((a, b) => a + b, 0);
  t.ok(Math.abs(total - 1) < 1e-6, "softmax scores sum to 1");
  t.equal(p.score, Math.max(...Object.values<number>(p.scores)));
  t.equal(p.scores[p.label], p.score);
  t.equal(p.truncated, false);
  t.notOk("logits" in p || "fusion_weights" in p, "no raw scores or explanation unless asked");
});

t.test("predict a batch: one prediction per text, in order, each as if sent alone", async (t) => {
  const texts = ["first text", "the second one is longer than the first", "third"];
  const batch = await predict("static5", { inputs: texts, raw_scores: true });
  t.equal(batch.status, 200);
  t.equal(batch.body.predictions.length, 3);
  for (const [i, text] of texts.entries()) {
    const alone = await predict("static5", { inputs: text, raw_scores: true });
    for (const [label, logit] of Object.entries<number>(alone.body.predictions[0].logits)) {
      t.ok(Math.abs(batch.body.predictions[i].logits[label] - logit) < 1e-5, `text ${i} ${label}`);
    }
  }
});

t.test("explain: per-layer fusion weights by adapter name", async (t) => {
  const { body } = await predict("dyn5", { inputs: ["explain me"], explain: true });
  const weights = body.predictions[0].fusion_weights;
  t.equal(weights.length, 3, "one entry per layer of the tiny backbone");
  for (const layer of weights) {
    t.same(Object.keys(layer), ["a1", "a2", "a3", "a4", "a5"]);
    const sum = Object.values<number>(layer).reduce((a, b) => a + b, 0);
    t.ok(Math.abs(sum - 1) < 1e-5, "weights sum to 1");
  }
  const single = await predict("a1", { inputs: "x", explain: true });
  t.same(single.body.predictions[0].fusion_weights, [{ a1: 1 }, { a1: 1 }, { a1: 1 }], "a single adapter gets all the weight");
});

t.test("multi-label and tagging heads", async (t) => {
  const ml = (await predict("multilabel", { inputs: "some text" })).body.predictions[0];
  t.same(ml.labels, Object.keys(ml.scores).filter((l) => ml.scores[l] >= 0.5), "labels are those scoring at least 0.5");
  t.ok(Object.values<number>(ml.scores).every((p) => p > 0 && p < 1), "per-label sigmoids");
  const tag = (await predict("tagger", { inputs: ["a b", "a b c d e"], raw_scores: true })).body.predictions;
  t.ok(tag[1].tokens.length > tag[0].tokens.length, "one entry per token");
  t.match(tag[0].tokens[0], { token: "[CLS]", label: /^TAGGER_/, score: Number, scores: Object, logits: Object });
  t.same(tag[0].tokens.map((tok: { token: string }) => tok.token), ["[CLS]", "a", "b", "[SEP]"], "each entry names its token");
  t.equal(tag[0].label, undefined, "no sequence label for tagging heads");
});

t.test("over-long text is truncated to max-seq-len tokens and marked", async (t) => {
  const long = Array.from({ length: 150 }, (_, i) => `w${i % 7}`).join(" ").slice(0, 200);
  const { status, body } = await predict("a1", { inputs: [long, "short"] });
  t.equal(status, 200);
  t.equal(body.predictions[0].truncated, true);
  t.equal(body.predictions[1].truncated, false);
});

t.test("refusals name what was wrong", async (t) => {
  const cases: [string, () => ReturnType<typeof predict>, number, string, RegExp][] = [
    ["unknown route", () => predict("nope", { inputs: "x" }), 404, "route_not_found", /route 'nope' does not exist/],
    ["malformed JSON", () => predict("a1", '{"inputs": ["x",'), 400, "malformed_json", /not valid JSON/],
    ["empty body", () => predict("a1", ""), 400, "malformed_json", /empty/],
    ["missing inputs", () => predict("a1", {}), 400, "invalid_request", /must have required property 'inputs'/],
    ["number for inputs", () => predict("a1", { inputs: 42 }), 400, "invalid_request", /inputs must be string,array/],
    ["number in the list", () => predict("a1", { inputs: ["x", 3] }), 400, "invalid_request", /inputs\/1 must be string/],
    ["string for explain", () => predict("a1", { inputs: "x", explain: "yes" }), 400, "invalid_request", /explain must be boolean/],
    ["unknown field", () => predict("a1", { inputs: "x", explian: true }), 400, "invalid_request", /additional properties/],
    ["JSON that is not an object", () => predict("a1", "[1,2]"), 400, "invalid_request", /must be object/],
    ["empty list", () => predict("a1", { inputs: [] }), 400, "invalid_request", /must NOT have fewer than 1 items/],
    ["too many inputs", () => predict("a1", { inputs: ["a", "b", "c", "d", "e"] }), 400, "invalid_request", /must NOT have more than 4 items/],
    ["text over max-input-chars", () => predict("a1", { inputs: ["ok", "x".repeat(201)] }), 400, "invalid_request", /inputs\/1 must NOT have more than 200 characters/],
    ["body over max-body-bytes", () => predict("a1", { inputs: ["x".repeat(3000)] }), 413, "payload_too_large", /exceeds 2048 bytes/],
    ["not JSON", () => predict("a1", "inputs=x", { "content-type": "text/plain" }), 415, "unsupported_media_type", /application\/json/],
  ];
  for (const [name, send, status, code, message] of cases) {
    t.test(name, async (t) => assertError(t, await send(), status, code, message));
  }
  assertError(t, await request(`${url}/v3/nothing`), 404, "not_found");
});

t.test("request ids: a client's id is kept, otherwise one is made", async (t) => {
  const own = await predict("a1", { inputs: "x" }, { "x-request-id": "client-42" });
  t.equal(own.headers.get("x-request-id"), "client-42");
  const made = await predict("a1", { inputs: "x" }, { "x-request-id": "bad id with spaces" });
  t.match(made.headers.get("x-request-id"), /^[0-9a-f-]{36}$/);
});

t.test("docs: Swagger UI and the OpenAPI document", async (t) => {
  const ui = await request(`${url}/docs/`);
  t.equal(ui.status, 200);
  t.match(ui.text, /swagger/i);
  const doc = await request(`${url}/docs/json`);
  t.equal(doc.body.openapi, "3.1.0");
  t.ok(doc.body.paths["/v1/predict/{fusion}"].post);
  t.equal(doc.body.paths["/v1/predict/{fusion}"].post.requestBody.content["application/json"].schema.properties.inputs.maxItems, 4, "limits shown are the server's own");
  t.not(DEFAULT_CONFIG.maxInputs, 4);
});

t.test("while the library loads: alive, not ready, predictions 503 not_ready", async (t) => {
  const app = await buildApp({ ...DEFAULT_CONFIG, library: TINY_LIBRARY, logLevel: "silent" });
  t.teardown(() => app.close());
  const loading = await app.listen({ host: "127.0.0.1", port: 0 });
  t.equal((await request(`${loading}/health`)).status, 200);
  t.same(await request(`${loading}/ready`).then((r) => [r.status, r.body]), [503, { status: "loading" }]);
  const res = await post(`${loading}/v1/predict/a1`, { inputs: "x" });
  assertError(t, res, 503, "not_ready");
  t.equal(res.headers.get("retry-after"), "1");
});

t.test("an empty or whitespace-only text is answered, as the model sees it: [CLS] [SEP] alone", async (t) => {
  const { status, body } = await predict("a1", { inputs: ["", "  \n ", "ok"], raw_scores: true });
  t.equal(status, 200);
  t.equal(body.predictions.length, 3);
  t.same(body.predictions[0].logits, body.predictions[1].logits, "whitespace normalizes away");
});
