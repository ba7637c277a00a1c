import { connect, type Socket } from "node:net";
import { once } from "node:events";
import t from "tap";
import { ADAPTERHUB_FILES } from "../../src/library/adapterhub.js";
import { assertError } from "../error-shape.js";
import { writableLibrary } from "../fixtures.js";
import { type Answer, HTTP_TIMEOUT_MS, post, request, startServer } from "./harness.js";

const server = await startServer(t, { adminToken: "errors-test-admin-token" });
const { port } = new URL(server.url);

/** Sends bytes as they are (fetch cannot send TRACE, unknown methods or broken framing) and reads the whole answer. */
async function raw(bytes: string): Promise<Answer> {
  const socket = connect(Number(port), "127.0.0.1");
  socket.setTimeout(HTTP_TIMEOUT_MS, () => socket.destroy(new Error("no answer in time")));
  await once(socket, "connect");
  socket.end(bytes);
  return readAnswer(socket);
}

async function readAnswer(socket: Socket): Promise<Answer> {
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  await once(socket, "close");
  const text = Buffer.concat(chunks).toString("utf8");
  const [head, ...rest] = text.split("\r\n\r\n");
  const [statusLine, ...lines] = head.split("\r\n");
  const headers = new Headers(lines.map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1).trim()] as [string, string]));
  const body = rest.join("\r\n\r\n");
  return { status: Number(statusLine.split(" ")[1]), headers, body: headers.get("content-type")?.startsWith("application/json") ? JSON.parse(body) : undefined, text: body };
}

t.test("headers over Node's limit: 431 in the one error shape", async (t) => {
  const answer = await raw(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`);
  assertError(t, answer, 431, "headers_too_large", /exceed \d+ bytes/);
});

t.test("an invalid Content-Length: 400 invalid_content_length", async (t) => {
  const answer = await raw(`POST /v1/predict/a1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12abc\r\n\r\n{}`);
  assertError(t, answer, 400, "invalid_content_length");
});

t.test("a request that is not HTTP: 400 malformed_request", async (t) => {
  assertError(t, await raw("HELLO\r\n\r\n"), 400, "malformed_request");
});

t.test("a body that does not arrive within --receive-timeout-ms: 408 request_timeout", async (t) => {
  const slow = await startServer(t, { headersTimeoutMs: 200, receiveTimeoutMs: 400 });
  const socket = connect(Number(new URL(slow.url).port), "127.0.0.1");
  await once(socket, "connect");
  socket.write("POST /v1/predict/a1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{");
  assertError(t, await readAnswer(socket), 408, "request_timeout");
});

t.test("TRACE and other methods a path does not serve: 405 with Allow", async (t) => {
  for (const [method, path, allow] of [
    ["TRACE", "/health", "GET, HEAD"],
    ["TRACE", "/v1/predict/a1", "POST"],
    ["DELETE", "/v1/fusions", "GET, HEAD"],
    ["GET", "/v1/predict/a1", "POST"],
    ["PATCH", "/v1/admin/adapters/a1", "PUT, DELETE"],
    ["FOO", "/ready", "GET, HEAD"],
  ]) {
    const answer = await raw(`${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assertError(t, answer, 405, "method_not_allowed");
    t.equal(answer.headers.get("allow"), allow, `${method} ${path}: Allow`);
  }
  assertError(t, await raw("TRACE /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 404, "not_found");
});

t.test("a path parameter over fastify's maxParamLength: 414 uri_too_long", async (t) => {
  assertError(t, await post(`${server.url}/v1/predict/${"x".repeat(101)}`, { inputs: "x" }), 414, "uri_too_long");
});

t.test("a URL that is not valid percent-encoding: 400 bad_url", async (t) => {
  assertError(t, await post(`${server.url}/v1/predict/%E0%A4%A`, { inputs: "x" }), 400, "bad_url");
});

t.test("an upload with more parts than a save directory has files: 413 payload_too_large", async (t) => {
  // Uploads are staged inside the library, so this server gets a library of its own.
  const uploads = await startServer(t, { adminToken: "errors-test-admin-token", library: await writableLibrary(t) });
  const form = new FormData();
  for (let i = 0; i <= ADAPTERHUB_FILES.size; i++) form.append("adapter_config.json", new Blob(["{}"]), "adapter_config.json");
  const answer = await request(`${uploads.url}/v1/admin/adapters/a1`, { method: "PUT", headers: { authorization: "Bearer errors-test-admin-token" }, body: form });
  assertError(t, answer, 413, "payload_too_large");
});

t.test("a request that arrives while the server drains is served; /ready says draining", async (t) => {
  const draining = await startServer(t);
  draining.app.serving.drain();
  const answer = await post(`${draining.url}/v1/predict/a1`, { inputs: "x" });
  t.equal(answer.status, 200);
  t.equal(answer.headers.get("connection"), "close", "the client is told to take its next request elsewhere");
  t.equal((await request(`${draining.url}/v1/fusions`)).status, 200);
  t.same(await request(`${draining.url}/ready`).then((r) => [r.status, r.body]), [503, { status: "draining" }]);
});

t.test("a request that arrives once the server stops: 503 shutting_down; the probes still answer", async (t) => {
  const stopping = await startServer(t);
  stopping.app.serving.stop();
  assertError(t, await request(`${stopping.url}/v1/fusions`), 503, "shutting_down");
  assertError(t, await post(`${stopping.url}/v1/predict/a1`, { inputs: "x" }), 503, "shutting_down");
  t.same(await request(`${stopping.url}/ready`).then((r) => [r.status, r.body]), [503, { status: "stopping" }]);
  t.equal((await request(`${stopping.url}/health`)).status, 200);
});
