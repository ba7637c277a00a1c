import t from "tap";
import { assertError } from "../error-shape.js";
import { DEFAULT_CONFIG } from "../../src/config.js";
import { buildApp } from "../../src/server/app.js";
import { request, startServer } from "../server/harness.js";
import { admin, adminServer, AUTH, writableLibrary } from "./admin-library.js";

const root = await writableLibrary(t);
const { url } = await adminServer(t, root, { maxUploadBytes: 4096 });

/** Every admin operation, from the OpenAPI document: a new admin route cannot be forgotten here. */
const documented = await buildApp({ ...DEFAULT_CONFIG, logLevel: "silent", adminToken: "documentation-only-token" });
await documented.ready();
const document = documented.swagger() as { paths: Record<string, Record<string, unknown>> };
await documented.close();
const operations = Object.entries<Record<string, unknown>>(document.paths)
  .filter(([path]) => path.startsWith("/v1/admin"))
  .flatMap(([path, methods]) => Object.keys(methods).map((method) => ({ method: method.toUpperCase(), path: path.replace("{name}", "a1") })));

t.test("the OpenAPI document lists the admin routes", async (t) => {
  t.ok(operations.length >= 8, `${operations.length} admin operations`);
});

for (const { method, path } of operations) {
  t.test(`${method} ${path} answers 401 without a token and with a wrong one`, async (t) => {
    for (const headers of [{}, { authorization: "Bearer wrong" }, { authorization: "Basic dGVzdA==" }] as Record<string, string>[]) {
      const answer = await admin(url, method, path, method === "PUT" ? { path: "adapters/a1/1" } : undefined, headers);
      assertError(t, answer, 401, "unauthorized");
    }
  });
}

t.test("without a configured token the admin routes are not served at all", async (t) => {
  const plain = await startServer(t);
  assertError(t, await request(`${plain.url}/v1/admin/adapters`, { headers: AUTH }), 404, "not_found");
});

t.test("paths outside the library root are refused", async (t) => {
  for (const path of ["/etc", "../tiny-library/adapters/a1/1", "adapters/../../x", "..", ""]) {
    const answer = await admin(url, "PUT", "/v1/admin/adapters/a1", { path });
    assertError(t, answer, 400);
  }
});

t.test("uploads are limited in size and to AdapterHub file names", async (t) => {
  const big = new FormData();
  big.append("adapter.safetensors", new Blob([new Uint8Array(8192)]), "adapter.safetensors");
  const tooBig = await request(`${url}/v1/admin/adapters/a1`, { method: "PUT", headers: AUTH, body: big });
  assertError(t, tooBig, 413, "payload_too_large");

  const odd = new FormData();
  odd.append("file", new Blob(["x"]), "run.sh");
  const refused = await request(`${url}/v1/admin/adapters/a1`, { method: "PUT", headers: AUTH, body: odd });
  assertError(t, refused, 400, "unexpected_file");
});

t.test("listing shows name, version, size, source and the routes using each module", async (t) => {
  const adapters = await admin(url, "GET", "/v1/admin/adapters");
  t.equal(adapters.status, 200);
  const a1 = adapters.body.find((a: { name: string }) => a.name === "a1");
  t.match(a1, { name: "a1", version: /^[0-9a-f]{12}$/, folder: "1", source: "adapters/a1/1" });
  t.ok(a1.size_bytes > 0);
  t.same([...a1.routes].sort(), ["a1", "dyn2", "dyn5", "static2", "static5"]);
  const fusions = await admin(url, "GET", "/v1/admin/fusions");
  t.match(fusions.body.find((f: { name: string }) => f.name === "dyn2"), { adapters: ["a1", "a2"], routes: ["dyn2"] });
});
