import type { ServerConfig } from "../../src/config.js";
export { scaleFloats, stage, writableLibrary } from "../fixtures.js";
import { request, startServer, type Answer, type TestServer } from "../server/harness.js";

export const TOKEN = "test-admin-token";
export const AUTH = { authorization: `Bearer ${TOKEN}` };

export async function adminServer(t: { teardown(fn: () => unknown): void }, library: string, overrides: Partial<ServerConfig> = {}): Promise<TestServer> {
  return startServer(t, { library, adminToken: TOKEN, ...overrides });
}

export function admin(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = AUTH): Promise<Answer> {
  return request(`${url}${path}`, {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

export async function routeVersions(url: string): Promise<Record<string, string>> {
  const { body } = await request(`${url}/v1/fusions`);
  return Object.fromEntries(body.fusions.map((f: { name: string; version: string }) => [f.name, f.version]));
}
