import { readFile } from "node:fs/promises";
import { join } from "node:path";
import t from "tap";
import { openApiYaml } from "../../src/server/openapi.js";

t.test("openapi.yaml is the document the server generates (npm run openapi rewrites it)", async (t) => {
  const committed = await readFile(join(import.meta.dirname, "..", "..", "openapi.yaml"), "utf8");
  t.equal(committed, await openApiYaml(), "run `npm run openapi` after changing a route schema");
});
