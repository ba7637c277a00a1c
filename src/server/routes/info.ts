import type { FastifyPluginAsync } from "fastify";
import { PACKAGE, type ServerConfig } from "../../config.js";
import { DRAINING, errorResponses } from "../errors.js";

const infoSchema = {
  description: "What this server is and serves",
  type: "object",
  required: ["name", "version", "status", "device", "precision", "library", "routes"],
  properties: {
    name: { type: "string" },
    version: { type: "string", description: "Version of the server" },
    commit: { type: "string", description: "Source commit of the build; absent when unknown (--commit)" },
    status: { type: "string", enum: ["loading", "ready", "draining"], description: "As /ready says" },
    device: { type: "string", enum: ["cpu", "cuda"] },
    precision: { type: "string", enum: ["float32", "int8", "auto"], description: "The precision served once loaded; while loading, as asked (auto: not measured yet)" },
    precision_reason: { type: "string", description: "Once loaded: why this precision (as asked, or what --precision auto measured on this CPU)" },
    int8_weight_bits: { type: "integer", enum: [7, 8], description: "int8 precision only, once loaded: the bits of the quantized weights" },
    library: { type: "string", description: "Where the model library is: a folder or an s3:// URL" },
    backbone: {
      type: "object",
      description: "Once the library is loaded",
      required: ["path", "model_type", "hidden_size", "layers", "max_positions"],
      properties: {
        path: { type: "string", description: "As library.json names it" },
        model_type: { type: "string" },
        hidden_size: { type: "integer" },
        layers: { type: "integer" },
        max_positions: { type: "integer" },
      },
    },
    max_length: { type: "integer", description: "Once loaded: tokens per input, special tokens included; longer texts are truncated" },
    routes: { type: "array", items: { type: "string" }, description: "The routes served (empty while loading): POST /v1/predict/{name}" },
  },
  examples: [
    {
      name: "fusion-serve",
      version: "0.1.0",
      commit: "3f2a9c1",
      status: "ready",
      device: "cpu",
      precision: "float32",
      precision_reason: "--precision float32",
      library: "/library",
      backbone: { path: "backbones/all-MiniLM-L6-v2", model_type: "bert", hidden_size: 384, layers: 6, max_positions: 512 },
      max_length: 128,
      routes: ["emotion", "hate", "hate-fusion", "irony", "irony-fusion", "offensive", "sentiment"],
    },
  ],
} as const;

/** GET /info: the server's version and build, where its library is, and what it serves. */
export const infoRoutes: FastifyPluginAsync<{ config: ServerConfig }> = async (app, { config }) => {
  app.get(
    "/info",
    { schema: { summary: "Server information", operationId: "getInfo", tags: ["operations"], response: { 200: infoSchema, ...errorResponses(DRAINING) } } },
    async () => {
      const runtime = app.serving.runtime;
      const library = runtime?.library;
      const backbone = library?.backbone;
      const int8 = runtime?.engine.int8;
      return {
        name: PACKAGE.name,
        version: PACKAGE.version,
        ...(config.commit === undefined ? {} : { commit: config.commit }),
        status: app.serving.phase,
        device: config.device,
        precision: runtime?.precision.precision ?? config.precision,
        ...(runtime ? { precision_reason: runtime.precision.reason } : {}),
        ...(int8 ? { int8_weight_bits: int8.weightBits } : {}),
        library: config.library,
        ...(library && backbone
          ? {
              backbone: {
                path: library.state.manifest.backbone,
                model_type: backbone.modelType,
                hidden_size: backbone.hiddenSize,
                layers: backbone.numLayers,
                max_positions: backbone.maxPositions,
              },
            }
          : {}),
        ...(runtime ? { max_length: runtime.maxSeqLen } : {}),
        routes: library ? [...library.state.routes.keys()].sort() : [],
      };
    },
  );
};
