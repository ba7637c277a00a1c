import t from "tap";
import { assertError } from "../error-shape.js";
import { post, request, startServer } from "./harness.js";
import { parsePrometheusText, sampleValue } from "./prometheus.js";

t.test("a burst beyond the queue limit gets 429 for the excess, 200 for the rest, and nothing hangs", async (t) => {
  // Four inputs fill the queue, and passes of one input drain it slowly: while one request is
  // being served, the next ones cannot fit.
  const { url } = await startServer(t, { maxQueue: 4, maxInputs: 4, maxBatchSize: 1, maxWaitMs: 0 });
  const inputs = ["one", "two", "three", "four"];
  const burst = await Promise.all(Array.from({ length: 24 }, () => post(`${url}/v1/predict/dyn5`, { inputs })));
  const statuses = burst.map((r) => r.status);
  const ok = statuses.filter((s) => s === 200).length;
  const refused = burst.filter((r) => r.status === 429);
  t.equal(ok + refused.length, burst.length, `only 200 and 429 (${statuses.join(" ")})`);
  t.ok(ok >= 1, `${ok} served`);
  t.ok(refused.length >= 1, `${refused.length} refused`);
  for (const r of refused) {
    assertError(t, r, 429, "overloaded");
    t.match(r.headers.get("retry-after"), /^\d+$/);
  }
  for (const r of burst.filter((r) => r.status === 200)) t.equal(r.body.predictions.length, 4);

  const after = await post(`${url}/v1/predict/dyn5`, { inputs });
  t.equal(after.status, 200, "serves normally after the burst");
  const m = parsePrometheusText((await request(`${url}/metrics`)).text);
  t.equal(sampleValue(m, "fusion_requests_rejected_total", { reason: "overloaded" }), refused.length);
  t.equal(sampleValue(m, "fusion_queue_depth"), 0, "the queue drained");
});

t.test("a request not answered within the request timeout gets 503 with Retry-After", async (t) => {
  // Every input waits 600 ms for company, far longer than the 50 ms a request may take.
  const { url } = await startServer(t, { requestTimeoutMs: 50, maxWaitMs: 600 });
  const started = Date.now();
  const res = await post(`${url}/v1/predict/a1`, { inputs: ["x", "y"] });
  assertError(t, res, 503, "timeout");
  t.equal(res.headers.get("retry-after"), "1");
  t.ok(Date.now() - started < 500, "answered at the timeout, not when the pass would have run");
  const m = parsePrometheusText((await request(`${url}/metrics`)).text);
  t.equal(sampleValue(m, "fusion_queue_depth"), 0, "its inputs left the queue");
  t.equal(sampleValue(m, "fusion_requests_rejected_total", { reason: "timeout" }), 1);
});
