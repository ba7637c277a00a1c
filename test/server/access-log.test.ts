import t from "tap";
import { request } from "./harness.js";
import { serverProcess } from "./process.js";

// Kubelets probe and Prometheus scrapes every few seconds: by default their requests leave no log lines.

t.test("by default, requests are logged but probes and scrapes are not", async (t) => {
  const server = await serverProcess(t, ["--log-level", "info"]);
  const quiet = ["/health", "/ready", "/metrics", "/v2/health/ready"];
  for (const path of quiet) await request(`${server.url}${path}`);
  await request(`${server.url}/v1/fusions`);
  // Lines arrive in order: once the last request's is in, the probes' would be too.
  await server.logged(() => server.logs.some((l) => l.req?.url === "/v1/fusions"), "the request's line");
  t.pass("/v1/fusions: logged");
  for (const path of quiet) t.equal(server.logs.filter((l) => l.req?.url === path).length, 0, `${path}: no line`);
});

t.test("--access-log all logs the probes too; off logs no request", async (t) => {
  const all = await serverProcess(t, ["--log-level", "info", "--access-log", "all"]);
  await request(`${all.url}/health`);
  await all.logged(() => all.logs.some((l) => l.req?.url === "/health"), "the probe's line");
  t.pass("all: /health logged");
  const off = await serverProcess(t, ["--log-level", "info", "--access-log", "off"]);
  await request(`${off.url}/v1/fusions`);
  await request(`${off.url}/health`);
  t.equal(off.logs.filter((l) => l.req !== undefined).length, 0, "off: no request line");
});
