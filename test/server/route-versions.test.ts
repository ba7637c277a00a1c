import t from "tap";
import { request, startServer } from "./harness.js";
import { parsePrometheusText, sampleValue } from "./prometheus.js";

// What a gateway or a dashboard compares across replicas: served without the admin API too.
t.test("without the admin API, /metrics says which version of each route is served, and that the library is in sync", async (t) => {
  const { url } = await startServer(t);
  const routes: { name: string; version: string }[] = (await request(`${url}/v1/fusions`)).body.fusions;
  const m = parsePrometheusText((await request(`${url}/metrics`)).text);
  for (const { name, version } of routes) t.equal(sampleValue(m, "route_version_info", { route: name, version }), 1, name);
  t.equal(m.samples.filter((s) => s.name === "route_version_info").length, routes.length, "one series per route");
  for (const { name, version } of routes) t.equal(sampleValue(m, "fusion_version_info", { fusion: name, version }), 1, `${name}, under the unified name`);
  t.equal(m.samples.filter((s) => s.name === "fusion_version_info").length, routes.length, "one series per route, under the unified name");
  t.equal(sampleValue(m, "library_in_sync"), 1, "a library folder is always its own manifest");
  t.equal((await request(`${url}/v1/admin/adapters`)).status, 404, "the admin API is off");
});
