import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServerConfig } from "../../src/config.js";
import { ENGINE_FIXTURES, FIXTURES, TINY_BACKBONE } from "../fixtures.js";
import { request, startServer, type Answer, type TestServer } from "../server/harness.js";

export const TOKEN = "test-admin-token";
export const AUTH = { authorization: `Bearer ${TOKEN}` };

/** A writable copy of the tiny library (the admin API writes through to it), removed at teardown. */
export async function writableLibrary(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "admin-library-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  await cp(join(FIXTURES, "tiny-library"), root, { recursive: true, dereference: true });
  const manifest = JSON.parse(await readFile(join(root, "library.json"), "utf8"));
  manifest.backbone = TINY_BACKBONE;
  await writeFile(join(root, "library.json"), JSON.stringify(manifest));
  return root;
}

/**
 * Copies a fixture save directory into <root>/incoming/<as>, transforming one weights file:
 * the way operators stage a retrained adapter before a path-based PUT.
 */
export async function stage(
  root: string,
  source: string,
  as: string,
  weightsFile: string,
  transform: (bytes: Buffer, dataStart: number) => void,
): Promise<string> {
  const dir = join(root, "incoming", as);
  await mkdir(join(root, "incoming"), { recursive: true });
  await cp(join(ENGINE_FIXTURES, source), dir, { recursive: true });
  const file = join(dir, weightsFile);
  const bytes = await readFile(file);
  transform(bytes, 8 + Number(bytes.readBigUInt64LE(0)));
  await writeFile(file, bytes);
  return `incoming/${as}`;
}

export function scaleFloats(factor: number) {
  return (bytes: Buffer, start: number) => {
    for (let o = start; o + 4 <= bytes.length; o += 4) bytes.writeFloatLE(bytes.readFloatLE(o) * factor, o);
  };
}

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
