import { performance } from "node:perf_hooks";
import t from "tap";
import { assertError } from "../error-shape.js";
import { type Answer, post, request, startServer } from "./harness.js";
import { type Exposition, parsePrometheusText, sampleValue } from "./prometheus.js";

// fusion_request_phase_seconds: every answered prediction, /v1 and /v2 alike, split into phases that follow one another.

const PHASES = ["parse", "tokenize", "queue", "pass", "hop", "serialize"];
const PREDICTIONS = /^\/v1\/predict\/|^\/v2\/models\/.*\/infer$/;

async function scrape(url: string): Promise<Exposition> {
  return parsePrometheusText((await request(`${url}/metrics`)).text);
}

const phase = (m: Exposition, name: string, which: "count" | "sum") => sampleValue(m, `fusion_request_phase_seconds_${which}`, { phase: name });
const total = (m: Exposition, name: string, keep: (labels: Readonly<Record<string, string>>) => boolean = () => true) =>
  m.samples.filter((s) => s.name === name && keep(s.labels)).reduce((sum, s) => sum + s.value, 0);

/** Sends one request after another, so each is answered alone, and adds up how long the client waited for them. */
async function timed(calls: (() => Promise<Answer>)[]): Promise<{ answers: Answer[]; seconds: number }> {
  const answers: Answer[] = [];
  let seconds = 0;
  for (const call of calls) {
    const sent = performance.now();
    answers.push(await call());
    seconds += (performance.now() - sent) / 1000;
  }
  return { answers, seconds };
}

const infer = (url: string, model: string, texts: string[]) => post(`${url}/v2/models/${model}/infer`, { inputs: [{ name: "text", shape: [texts.length], datatype: "BYTES", data: texts }] });

t.test("every answered prediction is observed once per phase, and its phases add up to its duration", async (t) => {
  const { url } = await startServer(t);
  const { answers, seconds } = await timed([
    () => post(`${url}/v1/predict/dyn2`, { inputs: "one text" }),
    () => post(`${url}/v1/predict/a1`, { inputs: ["two", "texts"] }),
    () => post(`${url}/v1/predict/tagger`, { inputs: "tag me", explain: true }),
    () => infer(url, "dyn2", ["through the protocol"]),
    () => infer(url, "static5", ["a", "few", "more"]),
  ]);
  t.same(
    answers.map((a) => a.status),
    [200, 200, 200, 200, 200],
  );
  assertError(t, await post(`${url}/v1/predict/a1`, { inputs: [] }), 400, "invalid_request");
  assertError(t, await post(`${url}/v1/predict/nope`, { inputs: "x" }), 404, "route_not_found");
  t.equal((await request(`${url}/health`)).status, 200);
  await scrape(url); // a scrape before the one read, which would count it if scrapes were observed

  const m = await scrape(url);
  for (const name of PHASES) {
    t.equal(phase(m, name, "count"), answers.length, `${name}: one observation per answered prediction, none for refusals, probes or scrapes`);
    t.ok(phase(m, name, "sum")! >= 0, `${name}: no negative time`);
  }
  t.equal(phase(m, "confirm", "count"), undefined, "no confirm phase on an eventual replica");

  const phases = PHASES.reduce((sum, name) => sum + phase(m, name, "sum")!, 0);
  const answered = total(m, "http_request_duration_seconds_sum", (l) => PREDICTIONS.test(l.route) && l.status_code === "200");
  t.ok(Math.abs(phases - answered) < 1e-6, `the phases (${phases} s) add up to the requests' duration on the server (${answered} s)`);
  t.ok(phases <= seconds, `and to no more than the client waited (${seconds} s)`);
  const passes = total(m, "fusion_inference_seconds_sum");
  t.ok(Math.abs(phase(m, "pass", "sum")! - passes) < 1e-9, "each request ran alone in one pass: pass is that pass's time");
});

t.test("a strict replica adds the confirm phase; a request split over passes is observed once, for the pass that answered it", async (t) => {
  const { url } = await startServer(t, { libraryConsistency: "strict", maxBatchSize: 2 });
  const { answers } = await timed([
    () => post(`${url}/v1/predict/dyn2`, { inputs: ["1", "2", "3", "4", "5"] }),
    () => infer(url, "a1", ["one"]),
  ]);
  t.same(
    answers.map((a) => a.status),
    [200, 200],
  );
  const m = await scrape(url);
  for (const name of [...PHASES, "confirm"]) t.equal(phase(m, name, "count"), 2, `${name}: once per request`);
  t.equal(sampleValue(m, "fusion_inference_seconds_count", { fusion: "dyn2" }), 3, "five inputs, two to a pass");
  t.ok(phase(m, "pass", "sum")! < total(m, "fusion_inference_seconds_sum"), "pass counts only the pass that delivered the last input");
  const phases = [...PHASES, "confirm"].reduce((sum, name) => sum + phase(m, name, "sum")!, 0);
  const answered = total(m, "http_request_duration_seconds_sum", (l) => PREDICTIONS.test(l.route) && l.status_code === "200");
  t.ok(Math.abs(phases - answered) < 1e-6, "the phases still add up to the requests' duration");
});
