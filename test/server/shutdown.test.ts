import { request as httpRequest } from "node:http";
import t from "tap";
import { HTTP_TIMEOUT_MS, post, request } from "./harness.js";
import { serverProcess } from "./process.js";

/** One request on a connection of its own (no pooled keep-alive socket): how a new client arrives. */
function onNewConnection(url: string, method: string, path: string, body?: unknown): Promise<number | string> {
  return new Promise((resolve) => {
    const req = httpRequest(`${url}${path}`, { method, agent: false, headers: body === undefined ? {} : { "content-type": "application/json" }, timeout: HTTP_TIMEOUT_MS }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

t.test("SIGTERM drains: /ready 503 at once, every new connection meanwhile is answered, then in-flight requests complete and the process exits 0", { timeout: 90_000 }, async (t) => {
  // A drain far longer than the test: it ends on the second SIGTERM, so nothing here depends on timing.
  const server = await serverProcess(t, ["--drain-seconds", "600", "--max-wait-ms", "400", "--shutdown-timeout-ms", "10000"]);
  const { url } = server;
  t.equal((await request(`${url}/ready`)).status, 200);

  server.child.kill("SIGTERM");
  await server.loggedMessage("draining: /ready answers 503, requests are still served");

  const answers: (number | string)[] = [];
  for (let round = 0; round < 4; round++) {
    answers.push(
      ...(await Promise.all([
        onNewConnection(url, "GET", "/ready"),
        onNewConnection(url, "GET", "/health"),
        ...Array.from({ length: 4 }, (_, i) => onNewConnection(url, "POST", "/v1/predict/dyn5", { inputs: [`draining ${round}.${i}`] })),
      ])),
    );
  }
  const refused = answers.filter((a) => typeof a === "string");
  t.same(refused, [], "no new connection refused or failed during the drain");
  t.same(answers, Array.from({ length: 4 }, () => [503, 200, 200, 200, 200, 200]).flat(), "/ready 503, /health and every prediction 200");

  // Predictions still in flight when the drain ends are answered before the process exits.
  const burst = Array.from({ length: 6 }, (_, i) => post(`${url}/v1/predict/dyn5`, { inputs: [`in flight ${i}`] }));
  await server.logged(() => server.received("/v1/predict/dyn5") === 16 + burst.length, "the burst received");
  server.child.kill("SIGTERM");
  t.same(
    (await Promise.all(burst)).map((a) => a.status),
    burst.map(() => 200),
    "every request in flight at the drain's end answered 200",
  );
  const [code, signal] = await server.exited;
  t.equal(signal, null);
  t.equal(code, 0, "exit status 0: the close finished within --shutdown-timeout-ms");
  const order = ["draining: /ready answers 503, requests are still served", "shutting down: finishing in-flight requests", "shut down"];
  t.same(
    server.logs.filter((l) => order.includes(l.msg)).map((l) => l.msg),
    order,
  );
});

t.test("the drain ends by itself after --drain-seconds", { timeout: 60_000 }, async (t) => {
  const server = await serverProcess(t, ["--drain-seconds", "1"]);
  server.child.kill("SIGTERM");
  const [code] = await server.exited;
  t.equal(code, 0);
  t.ok(server.logs.some((l) => l.msg === "shut down"));
});

t.test("--drain-seconds 0: in-flight requests complete with 200, new ones are refused, the process exits 0", { timeout: 60_000 }, async (t) => {
  // Inputs wait 400 ms for company, so the burst is certainly still in flight when SIGTERM lands.
  const server = await serverProcess(t, ["--drain-seconds", "0", "--max-wait-ms", "400", "--shutdown-timeout-ms", "10000"]);
  const { url } = server;
  t.equal((await request(`${url}/ready`)).status, 200);

  const burst = Array.from({ length: 12 }, (_, i) => post(`${url}/v1/predict/dyn5`, { inputs: [`in flight ${i}`] }));
  await server.logged(() => server.received("/v1/predict/dyn5") === burst.length, "every request received");
  server.child.kill("SIGTERM");
  await server.loggedMessage("shutting down: finishing in-flight requests");

  const late = await post(`${url}/v1/predict/dyn5`, { inputs: "too late" }).then(
    (r) => `status ${r.status}`,
    (err: Error) => `connection refused (${(err.cause as Error | undefined)?.message ?? err.message})`,
  );
  t.match(late, /^(status 503|connection refused)/, `a request after SIGTERM is refused: ${late}`);

  const answers = await Promise.all(burst);
  t.same(
    answers.map((a) => a.status),
    burst.map(() => 200),
    "every in-flight request answered 200",
  );
  t.ok(answers.every((a) => a.body.predictions.length === 1));
  const [code, signal] = await server.exited;
  t.equal(signal, null);
  t.equal(code, 0, "exit status 0");
  t.ok(server.logs.some((l) => l.msg === "shut down"));
});
