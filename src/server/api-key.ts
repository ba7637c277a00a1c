import fp from "fastify-plugin";
import { bearerMatcher } from "./bearer.js";
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
  if (url.startsWith("/v2")) return !url.startsWith("/v2/health/");
  return url === "/info" || (url.startsWith("/v1/") && !url.startsWith("/v1/admin/"));
}

/**
 * `--api-key`: every guarded route requires `Authorization: Bearer <key>` (bearer.ts), else 401.
 * Registered before the routes, so their OpenAPI entries say so too. Without a key, nothing is guarded.
 */
export const apiKeyPlugin = fp<ApiKeyOptions>(
  async (app, options) => {
    const { apiKey } = options;
    if (apiKey === undefined) return;
    const authorized = bearerMatcher(apiKey);
    app.addHook("onRoute", (route) => {
      if (!needsApiKey(route.url, options)) return;
      const schema = route.schema ?? {};
      const responses = (schema.response ?? {}) as Record<string, { content?: unknown }>;
      const unauthorized = errorResponses({ 401: ["unauthorized"] })[401];
      // In the error body this route's other errors have (the Open Inference Protocol's has its own).
      const content = responses["500"]?.content ?? unauthorized.content;
      route.schema = { ...schema, security: [{ apiKey: [] }], response: { ...responses, 401: { ...unauthorized, content } } };
    });
    app.addHook("onRequest", async (request) => {
      const url = request.routeOptions.url;
      if (url === undefined || !needsApiKey(url, options)) return;
      if (!authorized(request.headers.authorization)) throw new UnauthorizedError();
    });
  },
  { name: "api-key", dependencies: ["errors"] },
);
