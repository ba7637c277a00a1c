import { DEFAULT_CONFIG, type ServerConfig } from "../config.js";
import { buildApp } from "./app.js";

/**
 * The OpenAPI document of the routes as YAML. With the default configuration, an admin token and
 * an API key, so that the admin routes and the key are documented too, this is openapi.yaml at the repository root
 * (`npm run openapi` rewrites it; a test fails when the two differ).
 */
export async function openApiYaml(
  config: ServerConfig = { ...DEFAULT_CONFIG, logLevel: "silent", adminToken: "documentation-only-token", apiKey: "documentation-only-api-key" },
): Promise<string> {
  const app = await buildApp(config);
  try {
    await app.ready();
    return `${app.swagger({ yaml: true })}\n`;
  } finally {
    await app.close();
  }
}
