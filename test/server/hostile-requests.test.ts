import { connect } from "node:net";
import t from "tap";
import { assertError } from "../error-shape.js";
import { post, request, startServer } from "./harness.js";

/** Requests built to cost the server: each is answered, with the error body where refused, and /health keeps answering. */

const { url } = await startServer(t);
const port = Number(new URL(url).port);

/** Sends raw bytes and returns what comes back until the server closes the connection. */
function raw(bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let text = "";
    socket.setTimeout(10_000, () => reject(new Error(`no answer; got ${JSON.stringify(text)}`)));
    socket.on("data", (d) => (text += d));
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
    socket.write(bytes);
  });
}

const bodyOf = (answer: string) => JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));

t.test("a predict body with a __proto__ key is refused by name, not called invalid JSON", async (t) => {
  assertError(t, await post(`${url}/v1/predict/a1`, '{"inputs": "x", "__proto__": {"admin": true}}'), 400, "invalid_request", /__proto__/);
});

t.test("Expect: 200-ok is answered 417 with the JSON error body", async (t) => {
  const answer = await raw("POST /v1/predict/a1 HTTP/1.1\r\nhost: x\r\nexpect: 200-ok\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
  t.match(answer, /^HTTP\/1\.1 417 /);
  t.same(bodyOf(answer).error, "expectation_failed");
});

t.test("CONNECT is answered 400 with the JSON error body", async (t) => {
  const answer = await raw("CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n");
  t.match(answer, /^HTTP\/1\.1 400 /);
  t.same(bodyOf(answer).error, "malformed_request");
});

t.test("8 clients × 3 requests of 64 texts of 10,000 characters: every one answered, /health answering throughout", async (t) => {
  const texts = Array.from({ length: 64 }, () => "!".repeat(10_000));
  let done = false;
  const statuses: number[] = [];
  const clients = Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = 0; i < 3; i++) statuses.push((await post(`${url}/v1/predict/a1`, { inputs: texts })).status);
    }),
  ).finally(() => (done = true));
  const probes: number[] = [];
  let slowest = 0;
  while (!done) {
    const started = performance.now();
    probes.push((await request(`${url}/health`)).status);
    slowest = Math.max(slowest, performance.now() - started);
  }
  await clients;
  t.ok(probes.length >= 1 && probes.every((s) => s === 200), `/health answered 200 to all ${probes.length} probes during the flood (slowest ${Math.round(slowest)} ms)`);
  // 200, or the documented 429 overloaded when the queue is full.
  t.ok(statuses.length === 24 && statuses.every((s) => s === 200 || s === 429), `every request answered 200 or 429: ${statuses.join(",")}`);
});
