import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import fp from "fastify-plugin";
import { PACKAGE } from "../../config.js";

/**
 * The OpenAPI document, generated from the route schemas (they are the validation and the docs at
 * once), and Swagger UI on /docs; the document itself is at /docs/json and /docs/yaml.
 * Registered before the routes, whose schemas it collects as they are added.
 */
export const docsPlugin = fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        openapi: "3.1.0",
        info: {
          title: "fusion-serve",
          description: "Inference server for AdapterFusion models: one frozen backbone, many fused routes.",
          version: PACKAGE.version,
        },
        tags: [
          { name: "predict", description: "Predictions" },
          { name: "library", description: "What the model library serves" },
          { name: "operations", description: "Health, readiness, metrics" },
          { name: "admin", description: "Hot swap of adapters and fusion routes; served only when ADMIN_TOKEN is set" },
        ],
        components: {
          securitySchemes: {
            bearer: { type: "http", scheme: "bearer", description: "ADMIN_TOKEN" },
            apiKey: { type: "http", scheme: "bearer", description: "FUSION_API_KEY (--api-key): served only when it is set" },
          },
        },
      },
      refResolver: { buildLocalReference: (json) => String(json.$id) },
    });
    await app.register(swaggerUi, { routePrefix: "/docs" });
  },
  { name: "docs" },
);
