import { cp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import t from "tap";
import { assertError } from "../error-shape.js";
import { ENGINE_FIXTURES } from "../fixtures.js";
import { post, warmRoutes } from "../server/harness.js";
import { admin, adminServer, routeVersions, stage, writableLibrary } from "./admin-library.js";

const root = await writableLibrary(t);
const { url } = await adminServer(t, root);
const TEXTS = ["the first probe", "a second, longer probe text with more words", "3"];

/**
 * The raw bytes of the answers: "untouched" means byte-identical, not merely close. One request at
 * a time, so that each is a pass of its own, laid out the same way every time: inputs that share a
 * pass with others are packed differently, which moves the last bits of a float. The routes are
 * warm (their layouts resident), so every answer comes from the same form.
 */
const ROUTES = ["a1", "dyn2", "dyn5", "static2"];
async function snapshot(): Promise<string[]> {
  await warmRoutes(url, ROUTES);
  const answers: string[] = [];
  for (const route of ROUTES) answers.push((await post(`${url}/v1/predict/${route}`, { inputs: TEXTS, raw_scores: true, explain: true })).text);
  return answers;
}

const cases: { name: string; kind: "adapters" | "fusions"; target: string; make: () => Promise<string>; status: number; code: string }[] = [
  {
    name: "a truncated safetensors file",
    kind: "adapters",
    target: "a1",
    make: async () => {
      const path = await stage(root, "adapters/a1", "truncated", "adapter.safetensors", () => {});
      const file = join(root, path, "adapter.safetensors");
      const bytes = await readFile(file);
      await writeFile(file, bytes.subarray(0, bytes.length - 100));
      return path;
    },
    status: 422,
    code: "malformed_file",
  },
  {
    name: "an adapter of the wrong hidden size",
    kind: "adapters",
    target: "a1",
    make: async () => {
      await cp(join(ENGINE_FIXTURES, "foreign", "hidden48"), join(root, "incoming", "hidden48"), { recursive: true });
      return "incoming/hidden48";
    },
    status: 422,
    code: "shape_mismatch",
  },
  {
    name: "NaN weights",
    kind: "adapters",
    target: "a1",
    make: () => stage(root, "adapters/a1", "nan", "adapter.safetensors", (bytes, start) => bytes.writeFloatLE(NaN, start + 40)),
    status: 422,
    code: "non_finite_weights",
  },
  {
    name: "a config the engine does not support",
    kind: "adapters",
    target: "a1",
    make: async () => {
      const path = await stage(root, "adapters/a1", "swish", "adapter.safetensors", () => {});
      const file = join(root, path, "adapter_config.json");
      const config = JSON.parse(await readFile(file, "utf8"));
      config.config.non_linearity = "swish";
      await writeFile(file, JSON.stringify(config));
      return path;
    },
    status: 422,
    code: "unsupported_config",
  },
  {
    name: "a fusion naming a missing adapter",
    kind: "fusions",
    target: "dyn2",
    make: async () => {
      const path = await stage(root, "fusions/dyn2", "ghost", "model_adapter_fusion.safetensors", () => {});
      const dir = join(root, path);
      const config = JSON.parse(await readFile(join(dir, "adapter_fusion_config.json"), "utf8"));
      const weights = await readFile(join(dir, "model_adapter_fusion.safetensors"));
      const headerEnd = 8 + Number(weights.readBigUInt64LE(0));
      // Rename a2 → zz consistently in the config and the tensor names (same length keeps the header valid).
      config.name = "a1,zz";
      config.adapter_names = ["a1", "zz"];
      await writeFile(join(dir, "adapter_fusion_config.json"), JSON.stringify(config));
      const header = weights.subarray(0, headerEnd).toString("latin1").replaceAll("a1,a2", "a1,zz");
      await writeFile(join(dir, "model_adapter_fusion.safetensors"), Buffer.concat([Buffer.from(header, "latin1"), weights.subarray(headerEnd)]));
      return path;
    },
    status: 422,
    code: "unknown_adapter",
  },
];

for (const c of cases) {
  t.test(`${c.name} is refused with ${c.status} and changes nothing`, async (t) => {
    const before = await snapshot();
    const versions = await routeVersions(url);
    const manifest = await readFile(join(root, "library.json"), "utf8");
    const answer = await admin(url, "PUT", `/v1/admin/${c.kind}/${c.target}`, { path: await c.make() });
    assertError(t, answer, c.status, c.code);
    t.ok(answer.body.message.length > 10, answer.body.message);
    t.same(await routeVersions(url), versions, "every route keeps its version");
    t.same(await snapshot(), before, "predictions are byte-identical");
    t.equal(await readFile(join(root, "library.json"), "utf8"), manifest, "the manifest on disk is untouched");
  });
}
