// Rewrites openapi.yaml from the route schemas: `npm run openapi`.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.js";
import { openApiYaml } from "../src/server/openapi.js";

writeFileSync(join(PACKAGE_ROOT, "openapi.yaml"), await openApiYaml());
