import t from "tap";
import { post, request, startServer } from "../server/harness.js";

// The Open Inference Protocol v2 (REST) beside /v1: the same routes, the same answers, the protocol's shapes.

const TEXTS = ["a good day", "a very bad day indeed"];

async function v1(url: string, route: string, texts: string[]) {
  return (await post(`${url}/v1/predict/${route}`, { inputs: texts, explain: true })).body;
}

t.test("server metadata and health: /v2, live, ready", async (t) => {
  const { url } = await startServer(t);
  const meta = await request(`${url}/v2`);
  t.equal(meta.status, 200);
  t.match(meta.body, { name: "fusion-serve", extensions: ["binary_tensor_data"] });
  t.same((await request(`${url}/v2/health/live`)).body, { live: true });
  const ready = await request(`${url}/v2/health/ready`);
  t.same([ready.status, ready.body], [200, { ready: true }]);
});

t.test("model metadata: one BYTES input, the head's outputs, the version /v1 names", async (t) => {
  const { url } = await startServer(t);
  const fusions: { name: string; version: string }[] = (await request(`${url}/v1/fusions`)).body.fusions;
  const dyn2 = fusions.find((f) => f.name === "dyn2")!;
  const meta = await request(`${url}/v2/models/dyn2`);
  t.equal(meta.status, 200);
  t.same(meta.body.versions, [dyn2.version]);
  t.same(meta.body.inputs, [{ name: "text", datatype: "BYTES", shape: [-1] }]);
  t.same(
    meta.body.outputs.map((o: { name: string }) => o.name),
    ["probabilities", "logits", "label", "fusion_weights"],
  );
  t.same((await request(`${url}/v2/models/dyn2/versions/${dyn2.version}`)).body.versions, [dyn2.version], "under its version too");
  t.same((await request(`${url}/v2/models/dyn2/ready`)).body, { name: "dyn2", ready: true });
});

t.test("infer with JSON tensors answers what /v1/predict answers", async (t) => {
  const { url } = await startServer(t);
  const expected = await v1(url, "dyn2", TEXTS);
  const answer = await post(`${url}/v2/models/dyn2/infer`, {
    id: "r1",
    inputs: [{ name: "text", shape: [2], datatype: "BYTES", data: TEXTS }],
    outputs: [{ name: "probabilities" }, { name: "logits" }, { name: "label" }, { name: "fusion_weights" }],
  });
  t.equal(answer.status, 200);
  t.match(answer.body, { model_name: "dyn2", model_version: expected.version, id: "r1" });
  const out = Object.fromEntries(answer.body.outputs.map((o: { name: string }) => [o.name, o]));
  const labels = Object.keys(expected.predictions[0].scores);
  t.same(out.probabilities.shape, [2, labels.length]);
  // Within float rounding: the first request may be served unfolded, a later one from the route's layout (docs/design.md §2).
  const close = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) <= 1e-6);
  t.ok(close(out.probabilities.data, expected.predictions.flatMap((p: { scores: Record<string, number> }) => labels.map((l) => p.scores[l]))), "probabilities as /v1's scores");
  t.same(out.label.data, expected.predictions.map((p: { label: string }) => p.label));
  t.same(out.fusion_weights.shape, [2, expected.predictions[0].fusion_weights.length, 2]);
  t.ok(close(out.fusion_weights.data, expected.predictions.flatMap((p: { fusion_weights: Record<string, number>[] }) => p.fusion_weights.flatMap((layer) => Object.values(layer)))), "fusion weights as /v1's");
  const defaults = await post(`${url}/v2/models/dyn2/infer`, { inputs: [{ name: "text", shape: [2, 1], datatype: "BYTES", data: [[TEXTS[0]], [TEXTS[1]]] }] });
  t.same(
    defaults.body.outputs.map((o: { name: string }) => o.name),
    ["probabilities", "logits", "label"],
    "no outputs named: all but fusion_weights, nested data read by its shape",
  );
});

t.test("infer with the binary tensor extension, as tritonclient sends it by default", async (t) => {
  const { url } = await startServer(t);
  const expected = await v1(url, "dyn2", TEXTS);
  const bytes = Buffer.concat(TEXTS.flatMap((text) => [Buffer.from(Uint32Array.of(Buffer.byteLength(text)).buffer), Buffer.from(text)]));
  const header = Buffer.from(JSON.stringify({ inputs: [{ name: "text", shape: [2], datatype: "BYTES", parameters: { binary_data_size: bytes.length } }], parameters: { binary_data_output: true } }));
  const res = await fetch(`${url}/v2/models/dyn2/infer`, { method: "POST", headers: { "inference-header-content-length": String(header.length) }, body: Buffer.concat([header, bytes]) });
  t.equal(res.status, 200);
  const body = Buffer.from(await res.arrayBuffer());
  const length = Number(res.headers.get("inference-header-content-length"));
  const json = JSON.parse(body.toString("utf8", 0, length));
  let at = length;
  const tensors: Record<string, Buffer> = {};
  for (const o of json.outputs) tensors[o.name] = body.subarray(at, (at += o.parameters.binary_data_size));
  const probabilities = Array.from(new Float32Array(tensors.probabilities.buffer.slice(tensors.probabilities.byteOffset, tensors.probabilities.byteOffset + tensors.probabilities.length)));
  const labels = Object.keys(expected.predictions[0].scores);
  const want = expected.predictions.flatMap((p: { scores: Record<string, number> }) => labels.map((l) => p.scores[l]));
  t.ok(probabilities.every((p, i) => Math.abs(p - want[i]) <= 1e-6), "float32 probabilities within 1e-6 of /v1's");
  t.equal(tensors.label.readUInt32LE(0), Buffer.byteLength(expected.predictions[0].label), "BYTES labels are length-prefixed");
});

t.test("a tagging route's outputs are per token, shorter inputs padded", async (t) => {
  const { url } = await startServer(t);
  const expected = await v1(url, "tagger", TEXTS);
  const answer = await post(`${url}/v2/models/tagger/infer`, { inputs: [{ name: "text", shape: [2], datatype: "BYTES", data: TEXTS }], outputs: [{ name: "label" }] });
  const tokens = expected.predictions.map((p: { tokens: unknown[] }) => p.tokens.length);
  const width = Math.max(...tokens);
  t.same(answer.body.outputs[0].shape, [2, width]);
  const first = answer.body.outputs[0].data.slice(0, width);
  t.same(first.slice(0, tokens[0]), expected.predictions[0].tokens.map((p: { label: string }) => p.label));
  t.ok(first.slice(tokens[0]).every((l: string) => l === ""), "padding is empty labels");
});

t.test("errors come in the protocol's shape, with the status /v1 gives", async (t) => {
  const { url } = await startServer(t);
  const cases: [string, Promise<{ status: number; body: unknown }>, number][] = [
    ["unknown model", request(`${url}/v2/models/no-such-route`), 404],
    ["unknown model, infer", post(`${url}/v2/models/no-such-route/infer`, { inputs: [{ name: "text", shape: [1], datatype: "BYTES", data: ["x"] }] }), 404],
    ["another version", request(`${url}/v2/models/dyn2/versions/000000000000`), 404],
    ["FP32 input", post(`${url}/v2/models/dyn2/infer`, { inputs: [{ name: "text", shape: [1], datatype: "FP32", data: [1] }] }), 400],
    ["shape and data disagree", post(`${url}/v2/models/dyn2/infer`, { inputs: [{ name: "text", shape: [3], datatype: "BYTES", data: ["x"] }] }), 400],
    ["too many texts", post(`${url}/v2/models/dyn2/infer`, { inputs: [{ name: "text", shape: [65], datatype: "BYTES", data: Array(65).fill("x") }] }), 400],
    ["an unknown output", post(`${url}/v2/models/dyn2/infer`, { inputs: [{ name: "text", shape: [1], datatype: "BYTES", data: ["x"] }], outputs: [{ name: "hidden" }] }), 400],
    ["a header length past the body", fetch(`${url}/v2/models/dyn2/infer`, { method: "POST", headers: { "inference-header-content-length": "999" }, body: "{}" }).then(async (r) => ({ status: r.status, body: await r.json() })), 400],
    ["an unknown path", request(`${url}/v2/nothing`), 404],
  ];
  for (const [what, pending, status] of cases) {
    const answer = await pending;
    t.equal(answer.status, status, `${what}: ${status}`);
    t.match(answer.body, { error: String }, `${what}: {"error": ...}`);
    t.same(Object.keys(answer.body as object), ["error"], `${what}: the error and nothing else`);
  }
});

t.test("with --api-key, inference and metadata need the key; the protocol's probes do not", async (t) => {
  const key = "a-prediction-key-of-some-length";
  const { url } = await startServer(t, { apiKey: key });
  const body = { inputs: [{ name: "text", shape: [1], datatype: "BYTES", data: ["x"] }] };
  t.equal((await post(`${url}/v2/models/dyn2/infer`, body)).status, 401);
  t.equal((await request(`${url}/v2/models/dyn2`)).status, 401);
  t.equal((await post(`${url}/v2/models/dyn2/infer`, body, { authorization: `Bearer ${key}` })).status, 200);
  t.equal((await request(`${url}/v2/health/ready`)).status, 200);
  t.equal((await request(`${url}/v2/health/live`)).status, 200);
});
