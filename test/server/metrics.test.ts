import t from "tap";
import { assertError } from "../error-shape.js";
import { post, request, startServer } from "./harness.js";
import { parsePrometheusText, sampleValue } from "./prometheus.js";

const { url } = await startServer(t);

t.test("/metrics is valid Prometheus text and counts the requests sent, by route", async (t) => {
  for (let i = 0; i < 3; i++) t.equal((await post(`${url}/v1/predict/dyn2`, { inputs: `text ${i}` })).status, 200);
  for (let i = 0; i < 2; i++) t.equal((await post(`${url}/v1/predict/a1`, { inputs: ["x", "y"] })).status, 200);
  assertError(t, await post(`${url}/v1/predict/a1`, { inputs: [] }), 400, "invalid_request");
  assertError(t, await post(`${url}/v1/predict/nope`, { inputs: "x" }), 404, "route_not_found");
  t.equal((await request(`${url}/v1/fusions`)).status, 200);

  const res = await request(`${url}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
  const m = parsePrometheusText(res.text);

  const latency = (labels: Record<string, string>) =>
    sampleValue(m, "http_request_duration_seconds_count", { method: "POST", route: "/v1/predict/:fusion", ...labels });
  t.equal(latency({ fusion: "dyn2", status_code: "200" }), 3);
  t.equal(latency({ fusion: "a1", status_code: "200" }), 2);
  t.equal(latency({ fusion: "", status_code: "400" }), 1, "refused before it reached a route");
  t.equal(latency({ fusion: "", status_code: "404" }), 1, "unknown routes do not become label values");
  t.equal(sampleValue(m, "http_request_duration_seconds_count", { method: "GET", route: "/v1/fusions", status_code: "200" }), 1);

  t.equal(sampleValue(m, "fusion_requests_rejected_total", { reason: "invalid_request" }), 1);
  t.equal(sampleValue(m, "fusion_requests_rejected_total", { reason: "route_not_found" }), 1);
  t.equal(sampleValue(m, "fusion_batch_size_sum", { fusion: "a1" }), 4, "inputs through a1's forward passes");
  t.equal(sampleValue(m, "fusion_queue_wait_seconds_count", { fusion: "dyn2" }), 3);
  t.equal(sampleValue(m, "fusion_inference_seconds_count", { fusion: "dyn2" }), 3);
  t.ok(sampleValue(m, "fusion_tokens_processed_total", { fusion: "dyn2" })! >= 3 * 3, "tokens counted");
  t.equal(sampleValue(m, "http_requests_in_flight"), 1, "only the scrape itself is in flight");
  t.equal(sampleValue(m, "fusion_queue_depth"), 0);
  t.equal(sampleValue(m, "fusion_loaded_adapters"), 7);
  t.equal(sampleValue(m, "fusion_loaded_fusions"), 4);
  t.equal(sampleValue(m, "fusion_routes"), 11);
  t.ok(m.types.get("process_cpu_seconds_total") === "counter" && m.types.get("nodejs_heap_size_used_bytes") === "gauge", "default process metrics");
});

t.test("the Prometheus reader rejects what Prometheus would", async (t) => {
  const bad = [
    "no_type 1\n",
    "# TYPE x counter\nx{a=\"1\" 1\n",
    "# TYPE x counter\nx one\n",
    "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    "# TYPE x gauge\nx 1",
  ];
  for (const text of bad) t.throws(() => parsePrometheusText(text), Error, JSON.stringify(text));
});
