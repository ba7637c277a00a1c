import { createHash, timingSafeEqual } from "node:crypto";
import fp from "fastify-plugin";
import { UnauthorizedError } from "./status.js";
import { errorResponses } from "./errors.js";

export interface ApiKeyOptions {
  readonly apiKey: string | undefined;
  /** /metrics needs the key too. */
  readonly metrics: boolean;
}

/**
 * The routes the API key guards: the prediction API and what describes it. The probes stay open
 * (an orchestrator's kubelet sends no token), so does /metrics unless asked, and the admin API,
 * which has a token of its own; so do the docs, which say nothing of the library.
 */
export function needsApiKey(url: string, options: Pick<ApiKeyOptions, "metrics">): boolean {
  if (url === "/metrics") return options.metrics;
  return url === "/info" || (url.startsWith("/v1/") && !url.startsWith("/v1/admin/"));
}

/**
 * `--api-key`: every guarded route requires `Authorization: Bearer <key>`, compared in constant
 * time (as digests, so neither the length nor a prefix of the key shows in the timing), else 401.
 * Registered before the routes, so their OpenAPI entries say so too. Without a key, nothing is guarded.
 */
export const apiKeyPlugin = fp<ApiKeyOptions>(
  async (app, options) => {
    const { apiKey } = options;
    if (apiKey === undefined) return;
    const expected = digest(apiKey);
    app.addHook("onRoute", (route) => {
      if (!needsApiKey(route.url, options)) return;
      const schema = route.schema ?? {};
      route.schema = { ...schema, security: [{ apiKey: [] }], response: { ...(schema.response as object), ...errorResponses({ 401: ["unauthorized"] }) } };
    });
    app.addHook("onRequest", async (request) => {
      const url = request.routeOptions.url;
      if (url === undefined || !needsApiKey(url, options)) return;
      const token = /^bearer +(.+)$/i.exec(request.headers.authorization ?? "")?.[1];
      if (token === undefined || !timingSafeEqual(digest(token), expected)) throw new UnauthorizedError();
    });
  },
  { name: "api-key", dependencies: ["errors"] },
);

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}
