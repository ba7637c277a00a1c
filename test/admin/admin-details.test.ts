import { cp, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import t from "tap";
import { assertError } from "../error-shape.js";
import { ENGINE_FIXTURES } from "../fixtures.js";
import { request } from "../server/harness.js";
import { admin, adminServer, routeVersions, scaleFloats, stage, TOKEN, writableLibrary } from "./admin-library.js";

/** The live content version of an adapter (a route's version also covers its head and fusion). */
async function adapterVersion(url: string, name: string): Promise<string> {
  return (await admin(url, "GET", "/v1/admin/adapters")).body.find((a: { name: string }) => a.name === name).version;
}

const folders = async (root: string, name: string) => (await readdir(join(root, "adapters", name))).sort((a, b) => Number(a) - Number(b));

t.test("the Bearer scheme name is case-insensitive; the token is not", async (t) => {
  const root = await writableLibrary(t);
  const { url } = await adminServer(t, root);
  for (const scheme of ["Bearer", "bearer", "BEARER", "bEaReR"]) {
    t.equal((await admin(url, "GET", "/v1/admin/adapters", undefined, { authorization: `${scheme} ${TOKEN}` })).status, 200, scheme);
  }
  assertError(t, await admin(url, "GET", "/v1/admin/adapters", undefined, { authorization: `bearer ${TOKEN.toUpperCase()}` }), 401, "unauthorized");
});

t.test("a PUT of files identical to the live version keeps the version, its folder and the rollback target", async (t) => {
  const root = await writableLibrary(t);
  const { url } = await adminServer(t, root);
  const original = await adapterVersion(url, "a1");

  const same = await admin(url, "PUT", "/v1/admin/adapters/a1", { path: await stage(root, "adapters/a1", "same", "adapter.safetensors", () => {}) });
  t.equal(same.status, 200, same.text);
  t.match(same.body, { version: original, folder: "1", previous_folder: null, routes: [] });
  t.same(await folders(root, "a1"), ["1"], "no new version folder");

  const changed = await admin(url, "PUT", "/v1/admin/adapters/a1", { path: await stage(root, "adapters/a1", "x1.5", "adapter.safetensors", scaleFloats(1.5)) });
  t.match(changed.body, { folder: "2", previous_folder: "1" });
  const form = new FormData();
  for (const file of await readdir(join(root, "incoming", "x1.5"))) form.append(file, new Blob([await readFile(join(root, "incoming", "x1.5", file))]), file);
  const again = await request(`${url}/v1/admin/adapters/a1`, { method: "PUT", headers: { authorization: `Bearer ${TOKEN}` }, body: form });
  t.equal(again.status, 200, again.text);
  t.match(again.body, { version: changed.body.version, folder: "2", previous_folder: "1", routes: [] }, "an identical upload changes nothing either");
  t.same(await folders(root, "a1"), ["1", "2"]);

  t.equal((await admin(url, "POST", "/v1/admin/adapters/a1/rollback")).status, 200);
  t.equal(await adapterVersion(url, "a1"), original, "the rollback target is still the original version");
});

t.test("--keep-versions bounds the version folders, never deleting the live one or the rollback target", async (t) => {
  const root = await writableLibrary(t);
  const { app, url } = await adminServer(t, root, { keepVersions: 2 });
  const put = async (factor: number) => {
    const answer = await admin(url, "PUT", "/v1/admin/adapters/a1", { path: await stage(root, "adapters/a1", `x${factor}`, "adapter.safetensors", scaleFloats(factor)) });
    t.equal(answer.status, 200, answer.text);
    return answer.body as { folder: string; version: string };
  };
  const original = await adapterVersion(url, "a1");
  t.equal((await put(1.1)).folder, "2");
  t.same(await folders(root, "a1"), ["1", "2"]);
  t.equal((await put(1.2)).folder, "3");
  t.same(await folders(root, "a1"), ["2", "3"], "the oldest folder goes");
  const second = (await admin(url, "POST", "/v1/admin/adapters/a1/rollback")).body as { folder: string; version: string };
  t.equal(second.folder, "2");
  t.equal((await put(1.3)).folder, "4");
  t.same(await folders(root, "a1"), ["2", "4"], "folder 3 goes, although newer: 2 is the rollback target");
  t.equal((await admin(url, "POST", "/v1/admin/adapters/a1/rollback")).body.version, second.version);
  t.not(second.version, original);
  await app.close();

  const restarted = await adminServer(t, root, { keepVersions: 2 });
  t.equal(await adapterVersion(restarted.url, "a1"), second.version);
  t.same(await folders(root, "a1"), ["2", "4"]);
});

t.test("versions kept beyond the live one and the rollback target survive a restart", async (t) => {
  const root = await writableLibrary(t);
  const { app, url } = await adminServer(t, root, { keepVersions: 4 });
  for (const factor of [1.1, 1.2, 1.3, 1.4]) {
    t.equal((await admin(url, "PUT", "/v1/admin/adapters/a1", { path: await stage(root, "adapters/a1", `x${factor}`, "adapter.safetensors", scaleFloats(factor)) })).status, 200);
  }
  t.same(await folders(root, "a1"), ["2", "3", "4", "5"]);
  await app.close();
  const restarted = await adminServer(t, root);
  t.same(await folders(root, "a1"), ["2", "3", "4", "5"]);
  const oldest = await admin(restarted.url, "PUT", "/v1/admin/adapters/a1", { path: "adapters/a1/2" });
  t.equal(oldest.status, 200, "an old version folder can be put back by path");
});

t.test("a safetensors header with too many entries, or too large, is refused with 422 and changes nothing", async (t) => {
  const root = await writableLibrary(t);
  const { url } = await adminServer(t, root);
  const before = await routeVersions(url);
  const manifest = await readFile(join(root, "library.json"), "utf8");
  const junk = (entries: number, metadata: string) => async (dir: string) => {
    const file = join(dir, "adapter.safetensors");
    const bytes = await readFile(file);
    const length = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + length).toString("utf8"));
    for (let i = 0; i < entries; i++) header[`junk.${i}`] = { dtype: "I8", shape: [0], data_offsets: [0, 0] };
    header.__metadata__ = { junk: metadata };
    const json = Buffer.from(JSON.stringify(header));
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));
    await writeFile(file, Buffer.concat([prefix, json, bytes.subarray(8 + length)]));
  };
  for (const [what, make] of [
    ["20,000 junk entries", junk(20_000, "")],
    ["a 3 MB header", junk(0, "x".repeat(3_000_000))],
  ] as const) {
    const dir = join(root, "incoming", what.replace(/\W+/g, "-"));
    await cp(join(ENGINE_FIXTURES, "adapters", "a1"), dir, { recursive: true });
    await make(dir);
    const answer = await admin(url, "PUT", "/v1/admin/adapters/a1", { path: `incoming/${what.replace(/\W+/g, "-")}` });
    assertError(t, answer, 422, "malformed_file", /adapter\.safetensors.*limit/);
  }
  t.same(await routeVersions(url), before);
  t.equal(await readFile(join(root, "library.json"), "utf8"), manifest);
  t.same(await folders(root, "a1"), ["1"]);
});
