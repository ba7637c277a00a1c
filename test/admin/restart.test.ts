import { readFile } from "node:fs/promises";
import { join } from "node:path";
import t from "tap";
import { assertError } from "../error-shape.js";
import { FIXTURES } from "../fixtures.js";
import { post, request, warmRoutes } from "../server/harness.js";
import { admin, adminServer, AUTH, routeVersions, scaleFloats, stage, writableLibrary } from "./admin-library.js";

t.test("a restart after swaps serves the same versions, and rollback works after it", async (t) => {
  const root = await writableLibrary(t);
  const first = await adminServer(t, root);
  const original = await routeVersions(first.url);
  // dyn2 warm first, so that every answer compared byte for byte comes from its layout.
  const probe = async (url: string) => {
    await warmRoutes(url, ["dyn2"]);
    return (await post(`${url}/v1/predict/dyn2`, { inputs: "probe", raw_scores: true })).text;
  };
  const originalAnswer = await probe(first.url);

  const adapter = await admin(first.url, "PUT", "/v1/admin/adapters/a2", { path: await stage(root, "adapters/a2", "a2-v2", "adapter.safetensors", scaleFloats(1.3)) });
  t.equal(adapter.status, 200, adapter.text);
  const fusion = await admin(first.url, "PUT", "/v1/admin/fusions/dyn2", { path: await stage(root, "fusions/dyn2", "dyn2-v2", "model_adapter_fusion.safetensors", scaleFloats(0.7)) });
  t.equal(fusion.status, 200, fusion.text);
  const swapped = await routeVersions(first.url);
  t.not(swapped.dyn2, original.dyn2);
  t.not(swapped.a2, original.a2);
  const swappedAnswer = await probe(first.url);
  await first.app.close();

  const second = await adminServer(t, root);
  t.same(await routeVersions(second.url), swapped, "the restarted server serves what was live");
  t.equal(await probe(second.url), swappedAnswer, "and answers byte for byte the same");

  t.equal((await admin(second.url, "POST", "/v1/admin/fusions/dyn2/rollback")).status, 200);
  t.equal((await admin(second.url, "POST", "/v1/admin/adapters/a2/rollback")).status, 200);
  t.same(await routeVersions(second.url), original, "rollback after restart returns to the original versions");
  t.equal(await probe(second.url), originalAnswer);
  await second.app.close();

  const third = await adminServer(t, root);
  t.same(await routeVersions(third.url), original, "and the rollback survives another restart");
});

t.test("delete: an adapter in use is a 409; a fusion route can be deleted, then its adapters", async (t) => {
  const root = await writableLibrary(t);
  const { url } = await adminServer(t, root);
  assertError(t, await admin(url, "DELETE", "/v1/admin/adapters/a3"), 409, "adapter_in_use");
  t.equal((await admin(url, "DELETE", "/v1/admin/fusions/dyn5")).status, 200);
  t.equal((await admin(url, "DELETE", "/v1/admin/fusions/static5")).status, 200);
  t.equal((await admin(url, "DELETE", "/v1/admin/adapters/a3")).status, 200);
  assertError(t, await post(`${url}/v1/predict/dyn5`, { inputs: "x" }), 404, "route_not_found");
  assertError(t, await admin(url, "DELETE", "/v1/admin/adapters/a3"), 404, "adapter_not_found");
  assertError(t, await admin(url, "POST", "/v1/admin/fusions/dyn2/rollback"), 409, "no_previous_version");
});

t.test("a new fusion route can be created from a path and served at once", async (t) => {
  const root = await writableLibrary(t);
  const { url } = await adminServer(t, root);
  const created = await admin(url, "PUT", "/v1/admin/fusions/dyn2-copy", { path: await stage(root, "fusions/dyn2", "copy", "model_adapter_fusion.safetensors", () => {}) });
  t.equal(created.status, 200, created.text);
  const answer = await post(`${url}/v1/predict/dyn2-copy`, { inputs: "hello" });
  t.equal(answer.status, 200);
  t.equal(answer.body.fusion, "dyn2-copy");
});

t.test("an adapter uploaded as multipart files replaces the live one", async (t) => {
  const root = await writableLibrary(t);
  const { url } = await adminServer(t, root);
  const before = await routeVersions(url);
  const staged = await stage(root, "adapters/a1", "upload", "adapter.safetensors", scaleFloats(1.2));
  const form = new FormData();
  for (const file of ["adapter_config.json", "adapter.safetensors", "head_config.json", "model_head.safetensors"]) {
    form.append(file, new Blob([await readFile(join(root, staged, file))]), file);
  }
  const answer = await request(`${url}/v1/admin/adapters/a1`, { method: "PUT", headers: AUTH, body: form });
  t.equal(answer.status, 200, answer.text);
  t.equal(answer.body.folder, "2");
  const after = await routeVersions(url);
  t.not(after.a1, before.a1);
  t.not(after.dyn2, before.dyn2);
  t.equal(after.a2, before.a2);
});

t.test("an adapter saved as PyTorch .bin files is accepted as an upload", async (t) => {
  const root = await writableLibrary(t);
  const { url } = await adminServer(t, root);
  const saved = join(FIXTURES, "loaders", "bin", "adapters", "x");
  const form = new FormData();
  for (const file of ["adapter_config.json", "pytorch_adapter.bin", "head_config.json", "pytorch_model_head.bin"]) {
    form.append(file, new Blob([await readFile(join(saved, file))]), file);
  }
  const answer = await request(`${url}/v1/admin/adapters/x`, { method: "PUT", headers: AUTH, body: form });
  t.equal(answer.status, 200, answer.text);
  const predicted = await post(`${url}/v1/predict/x`, { inputs: "served from a .bin upload" });
  t.equal(predicted.status, 200, predicted.text);
});
