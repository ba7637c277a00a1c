import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { DEFAULT_CONFIG, runtimeOptions, type ServerConfig } from "../../src/config.js";
import { buildApp } from "../../src/server/app.js";
import { loadRuntime } from "../../src/core/runtime.js";
import { FIXTURES } from "../fixtures.js";

export const TINY_LIBRARY = join(FIXTURES, "tiny-library");

/** Every HTTP call in the tests gives up after this, so nothing can hang. */
export const HTTP_TIMEOUT_MS = 15_000;

export interface TestServer {
  readonly app: FastifyInstance;
  readonly url: string;
}

/** A real server listening on 127.0.0.1 (free port) serving the tiny library; closed at the test's teardown. */
export async function startServer(t: { teardown(fn: () => unknown): void }, overrides: Partial<ServerConfig> = {}): Promise<TestServer> {
  const config: ServerConfig = { ...DEFAULT_CONFIG, library: TINY_LIBRARY, host: "127.0.0.1", port: 0, threads: 1, logLevel: "silent", ...overrides };
  const app = await buildApp(config);
  t.teardown(() => app.close());
  await app.listen({ host: config.host, port: config.port });
  app.serving.attach(await loadRuntime(runtimeOptions(config), app.log, app.metrics));
  const address = app.server.address();
  if (!address || typeof address === "string") throw new Error("server has no TCP address");
  return { app, url: `http://127.0.0.1:${address.port}` };
}

export interface Answer<T = any> {
  readonly status: number;
  readonly headers: Headers;
  readonly body: T;
  readonly text: string;
}

export async function request<T = any>(url: string, init: RequestInit = {}): Promise<Answer<T>> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  const text = await res.text();
  let body: any = undefined;
  if (res.headers.get("content-type")?.startsWith("application/json")) body = JSON.parse(text);
  return { status: res.status, headers: res.headers, body, text };
}

/** POSTs `body` as JSON (a string is sent as it is, to test malformed bodies). */
export function post<T = any>(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer<T>> {
  return request<T>(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/**
 * Asks for each route until the server holds a layout of every one. Layouts are built in the
 * background after a route's first requests, which are served unfolded (docs/design.md §2); a test
 * that compares answers byte for byte warms its routes first, so that every answer it compares
 * comes from the same form.
 */
export async function warmRoutes(url: string, routes: readonly string[]): Promise<void> {
  for (;;) {
    for (const route of routes) await post(`${url}/v1/predict/${route}`, { inputs: "warm" });
    const resident = Number(/^fusion_resident_routes (\d+)$/m.exec((await request(`${url}/metrics`)).text)?.[1] ?? 0);
    if (resident >= routes.length) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
