import type { FastifyPluginAsync } from "fastify";
import { DRAINING, errorResponses } from "../errors.js";

/** GET /v1/fusions — every route the library serves right now. */
export const fusionsRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    "/v1/fusions",
    {
      schema: {
        summary: "List routes",
        operationId: "listRoutes",
        description: "Every fusion route, and every single adapter that carries a prediction head, with what it predicts.",
        tags: ["library"],
        response: {
          200: {
            description: "The routes, by name",
            type: "object",
            required: ["fusions"],
            properties: {
              fusions: {
                type: "array",
                items: {
                  type: "object",
                  required: ["name", "kind", "version", "adapters", "head", "labels"],
                  properties: {
                    name: { type: "string", description: "Route name: POST /v1/predict/{name}" },
                    kind: { type: "string", enum: ["fusion", "adapter"], description: "A fusion of adapters, or one adapter with its own head" },
                    version: { type: "string", description: "Content hash; changes when any adapter, fusion or head of the route changes" },
                    adapters: { type: "array", items: { type: "string" }, description: "Adapter names, in fusion order" },
                    fusion_type: { type: "string", enum: ["dynamic", "static"], description: "Fusion routes only: AdapterFusion config" },
                    head: { type: "string", enum: ["classification", "multilabel_classification", "tagging"] },
                    labels: { type: "array", items: { type: "string" }, description: "The head's labels, by class id" },
                  },
                },
              },
            },
            examples: [
              {
                fusions: [
                  {
                    name: "hate-fusion",
                    kind: "fusion",
                    version: "e11d9da4ce66",
                    adapters: ["sentiment", "emotion", "offensive", "irony", "hate"],
                    fusion_type: "dynamic",
                    head: "classification",
                    labels: ["not-hate", "hate"],
                  },
                ],
              },
            ],
          },
          ...errorResponses(DRAINING, { 503: ["not_ready"] }),
        },
      },
    },
    async () => {
      const { runtime } = app.serving.require();
      const routes = [...runtime.library.state.routes.values()].sort((a, b) => a.name.localeCompare(b.name));
      return {
        fusions: routes.map((r) => ({
          name: r.name,
          kind: r.kind,
          version: r.version,
          adapters: r.adapters.map((a) => a.name),
          ...(r.fusion ? { fusion_type: r.fusion.kind } : {}),
          head: r.head.type,
          labels: r.head.labels,
        })),
      };
    },
  );
};
