import { cp, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { assertError } from "../error-shape.js";
import { ENGINE_FIXTURES } from "../fixtures.js";
import { admin, adminServer, routeVersions, scaleFloats, stage, writableLibrary } from "./admin-library.js";

const root = await writableLibrary(t);
const { url } = await adminServer(t, root);

// A valid adapter a1 with other weights, outside the library: what a link must not bring in.
const outside = await mkdtemp(join(tmpdir(), "outside-"));
t.teardown(() => rm(outside, { recursive: true, force: true }));
const outsideA1 = join(outside, "a1");
await cp(join(root, await stage(root, "adapters/a1", "outside-source", "adapter.safetensors", scaleFloats(1.7))), outsideA1, { recursive: true });
await rm(join(root, "incoming", "outside-source"), { recursive: true });

/** What must not change when a PUT is refused: the manifest, a1's version folders, the served versions. */
async function snapshot() {
  return { manifest: await readFile(join(root, "library.json"), "utf8"), folders: await readdir(join(root, "adapters", "a1")), versions: await routeVersions(url) };
}

const refused: { name: string; make: () => Promise<string> }[] = [
  {
    name: "a folder link to an adapter outside the library",
    make: async () => {
      await symlink(outsideA1, join(root, "incoming", "outside-link"));
      return "incoming/outside-link";
    },
  },
  {
    name: "a file link to weights outside the library, in a real folder inside it",
    make: async () => {
      const dir = join(root, "incoming", "file-link");
      await mkdir(dir);
      for (const file of ["adapter_config.json", "head_config.json", "model_head.safetensors"]) await cp(join(ENGINE_FIXTURES, "adapters", "a1", file), join(dir, file));
      await symlink(join(outsideA1, "adapter.safetensors"), join(dir, "adapter.safetensors"));
      return "incoming/file-link";
    },
  },
  {
    name: "a folder link to /etc",
    make: async () => {
      await symlink("/etc", join(root, "incoming", "etc"));
      return "incoming/etc";
    },
  },
  {
    name: "a link to a folder above the library",
    make: async () => {
      await symlink("../..", join(root, "incoming", "up"));
      return "incoming/up";
    },
  },
];

await mkdir(join(root, "incoming"), { recursive: true });
for (const { name, make } of refused) {
  t.test(`${name}: 400, nothing copied, nothing changed`, async (t) => {
    const before = await snapshot();
    const answer = await admin(url, "PUT", "/v1/admin/adapters/a1", { path: await make() });
    assertError(t, answer, 400, "path_outside_library");
    t.same(await snapshot(), before);
  });
}

t.test("links that stay inside the library are followed, and the new version holds copies", async (t) => {
  const staged = join(root, await stage(root, "adapters/a1", "inside-target", "adapter.safetensors", scaleFloats(1.3)));
  const dir = join(root, "incoming", "inside-links");
  await mkdir(dir);
  for (const file of await readdir(staged)) await symlink(join(staged, file), join(dir, file));
  const before = await routeVersions(url);
  const answer = await admin(url, "PUT", "/v1/admin/adapters/a1", { path: "incoming/inside-links" });
  t.equal(answer.status, 200, answer.text);
  t.not((await routeVersions(url)).a1, before.a1);
  for (const file of await readdir(join(root, "adapters", "a1", answer.body.folder))) {
    t.ok((await lstat(join(root, "adapters", "a1", answer.body.folder, file))).isFile(), `${file} is a file, not a link`);
  }
});
