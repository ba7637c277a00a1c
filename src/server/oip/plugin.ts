import type { FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { PACKAGE, type ServerConfig } from "../../config.js";
import { predict } from "../../core/predict.js";
import type { HeadOutput } from "../../engine/heads.js";
import { BadRequestError, ServingError } from "../../errors.js";
import type { FusionRoute } from "../../library/route.js";
import { answer, BODY_ERRORS, DRAINING, errorResponses, notServed, oipErrorBody, parseJsonBody, PATH_ERRORS, toServingError } from "../errors.js";
import { type OutputTensor, readTexts, type WireTensor, writeAnswer } from "./tensors.js";

/** The name of the one input every route takes: its texts. */
const TEXT_INPUT = "text";
/** Outputs sent when a request names none; fusion_weights costs an explained pass, so only on request. */
const DEFAULT_OUTPUTS = ["probabilities", "logits", "label"] as const;
const OUTPUTS = [...DEFAULT_OUTPUTS, "fusion_weights"] as const;
type OutputName = (typeof OUTPUTS)[number];

const errorSchema = {
  $id: "InferenceError",
  type: "object",
  required: ["error"],
  properties: { error: { type: "string", description: "What went wrong (the Open Inference Protocol's error shape)" } },
} as const;

/** What Node's HTTP parser refuses before any route is known keeps the server's own error body. */
const BEFORE_ROUTING = new Set(["408", "417", "431"]);

/** The protocol's own error shape for every error answer of an operation a route gives. */
const oipErrors = (...groups: Parameters<typeof errorResponses>) =>
  Object.fromEntries(
    Object.entries(errorResponses(...groups)).map(([status, answer]) => [
      status,
      BEFORE_ROUTING.has(status) ? answer : { ...answer, content: { "application/json": { schema: { $ref: "InferenceError#" } } } },
    ]),
  );

const tensorMetadata = {
  type: "object",
  required: ["name", "datatype", "shape"],
  properties: { name: { type: "string" }, datatype: { type: "string" }, shape: { type: "array", items: { type: "integer" } } },
} as const;

const modelParams = {
  type: "object",
  required: ["model"],
  properties: {
    model: { type: "string", description: "Route name, as GET /v1/fusions lists it", examples: ["hate-fusion"] },
    version: { type: "string", description: "The route's version (its content hash, as metadata lists it); another version is 404" },
  },
} as const;

/** The protocol lets clients send parameters of their own, ignored here; a key that reaches an object's prototype never. */
const parameters = (properties: object) => ({ type: "object", properties, propertyNames: { not: { enum: ["__proto__", "constructor"] } } }) as const;

const inferBody = {
  type: "object",
  required: ["inputs"],
  additionalProperties: false,
  properties: {
    id: { type: "string" },
    parameters: parameters({ binary_data_output: { type: "boolean" } }),
    inputs: {
      type: "array",
      minItems: 1,
      maxItems: 1,
      items: {
        type: "object",
        required: ["name", "shape", "datatype"],
        additionalProperties: false,
        // The texts come as JSON data, or in the binary part of the body with their size here.
        anyOf: [{ required: ["data"] }, { required: ["parameters"], properties: { parameters: { type: "object", required: ["binary_data_size"] } } }],
        properties: {
          name: { type: "string", enum: [TEXT_INPUT] },
          shape: { type: "array", minItems: 1, maxItems: 2, items: { type: "integer", minimum: 0 } },
          datatype: { type: "string", enum: ["BYTES"] },
          parameters: parameters({ binary_data_size: { type: "integer", minimum: 0 } }),
          data: { type: "array", description: "The texts, flat or nested as the shape says" },
        },
      },
    },
    outputs: {
      type: "array",
      items: {
        type: "object",
        required: ["name"],
        additionalProperties: false,
        properties: { name: { type: "string", enum: [...OUTPUTS] }, parameters: parameters({ binary_data: { type: "boolean" } }) },
      },
    },
  },
  examples: [{ inputs: [{ name: TEXT_INPUT, shape: [2], datatype: "BYTES", data: ["I love this community", "go back where you came from"] }] }],
} as const;

const inferAnswer = {
  type: "object",
  required: ["model_name", "outputs"],
  properties: {
    model_name: { type: "string" },
    model_version: { type: "string" },
    id: { type: "string" },
    outputs: {
      type: "array",
      items: {
        type: "object",
        required: ["name", "shape", "datatype"],
        properties: {
          name: { type: "string" },
          shape: { type: "array", items: { type: "integer" } },
          datatype: { type: "string" },
          parameters: { type: "object", properties: { binary_data_size: { type: "integer" } } },
          data: { type: "array", items: { type: ["number", "string"] } },
        },
      },
    },
  },
  examples: [
    {
      model_name: "hate-fusion",
      model_version: "e11d9da4ce66",
      outputs: [
        { name: "probabilities", shape: [1, 2], datatype: "FP32", data: [0.995942886204096, 0.0040571137959039185] },
        { name: "label", shape: [1], datatype: "BYTES", data: ["not-hate"] },
      ],
    },
  ],
} as const;

interface InferBody {
  id?: string;
  parameters?: { binary_data_output?: boolean };
  inputs: WireTensor[];
  outputs?: { name: OutputName; parameters?: { binary_data?: boolean } }[];
}

type ModelParams = { model: string; version?: string };

/**
 * The Open Inference Protocol v2 over REST (KServe's and Triton's clients speak it), beside /v1:
 * server and model metadata, health, and infer, on the same prediction path as /v1/predict
 * (core/predict.ts). Every route is a model; its one input is a BYTES tensor of texts, its
 * outputs the head's probabilities, logits and label, and on request the fusion attention.
 * Registered under the /v2 prefix, with the protocol's error shape, `{"error": "..."}`.
 */
export const oipRoutes: FastifyPluginAsync<{ config: ServerConfig }> = async (app, { config }) => {
  app.addSchema(errorSchema);
  const binaryBodies = new WeakMap<FastifyRequest, Buffer>();

  // Clients of the binary extension send no Content-Type, or application/octet-stream: every body is read as bytes here and parsed below.
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => done(null, body));
  app.addHook("preValidation", async (request) => {
    if (!Buffer.isBuffer(request.body)) return;
    const raw = request.body;
    const declared = request.headers["inference-header-content-length"];
    const headerLength = declared === undefined ? raw.length : Number(declared);
    if (!Number.isSafeInteger(headerLength) || headerLength < 0 || headerLength > raw.length) {
      throw new BadRequestError("invalid_request", `Inference-Header-Content-Length must be a byte count within the body (${raw.length} bytes)`);
    }
    request.body = parseJsonBody(raw.toString("utf8", 0, headerLength));
    if (headerLength < raw.length) binaryBodies.set(request, raw.subarray(headerLength));
  });

  // As the server's own handler: a request no route serves may fail while its body is read (QUERY without Content-Type).
  app.setErrorHandler((err: FastifyError | ServingError, request, reply) =>
    answer(app, request, reply, request.is404 ? notServed(app, request) : toServingError(err, { maxBodyBytes: config.maxBodyBytes }), err, oipErrorBody),
  );
  app.setNotFoundHandler((request, reply) => answer(app, request, reply, notServed(app, request), undefined, oipErrorBody));

  const tags = ["open inference protocol"];

  app.get(
    "",
    {
      schema: {
        summary: "Server metadata",
        operationId: "oipServerMetadata",
        tags,
        response: {
          200: { type: "object", required: ["name", "version", "extensions"], properties: { name: { type: "string" }, version: { type: "string" }, extensions: { type: "array", items: { type: "string" } } } },
          ...oipErrors(DRAINING),
        },
      },
    },
    async () => ({ name: PACKAGE.name, version: PACKAGE.version, extensions: ["binary_tensor_data"] }),
  );

  app.get(
    "/health/live",
    { config: { answersWhileStopping: true }, schema: { summary: "Liveness (protocol)", operationId: "oipLive", tags, response: { 200: { type: "object", properties: { live: { type: "boolean" } } }, ...oipErrors() } } },
    async () => ({ live: true }),
  );

  app.get(
    "/health/ready",
    {
      config: { answersWhileStopping: true },
      schema: {
        summary: "Readiness (protocol)",
        description: "200 once the library is loaded; 503 while it loads and from the moment shutdown begins, as GET /ready.",
        operationId: "oipReady",
        tags,
        response: { ...oipErrors(), 200: { type: "object", properties: { ready: { type: "boolean" } } }, 503: { type: "object", properties: { ready: { type: "boolean" } } } },
      },
    },
    async (_request, reply) => {
      const ready = app.serving.phase === "ready";
      return reply.code(ready ? 200 : 503).send({ ready });
    },
  );

  const metadataSchema = {
    type: "object",
    required: ["name", "versions", "platform", "inputs", "outputs"],
    properties: {
      name: { type: "string" },
      versions: { type: "array", items: { type: "string" } },
      platform: { type: "string" },
      inputs: { type: "array", items: tensorMetadata },
      outputs: { type: "array", items: tensorMetadata },
    },
    examples: [
      {
        name: "hate-fusion",
        versions: ["e11d9da4ce66"],
        platform: "fusion-serve",
        inputs: [{ name: "text", datatype: "BYTES", shape: [-1] }],
        outputs: [
          { name: "probabilities", datatype: "FP32", shape: [-1, 2] },
          { name: "logits", datatype: "FP32", shape: [-1, 2] },
          { name: "label", datatype: "BYTES", shape: [-1] },
          { name: "fusion_weights", datatype: "FP32", shape: [-1, 6, 5] },
        ],
      },
    ],
  } as const;
  const modelErrors = oipErrors(PATH_ERRORS, DRAINING, { 404: ["route_not_found"], 503: ["not_ready"] });

  for (const versioned of [false, true]) {
    const path = versioned ? "/models/:model/versions/:version" : "/models/:model";
    const which = versioned ? " of one version" : "";
    app.get<{ Params: ModelParams }>(
      path,
      { schema: { summary: `Model metadata${which}`, operationId: versioned ? "oipModelVersionMetadata" : "oipModelMetadata", tags, params: modelParams, response: { 200: metadataSchema, ...modelErrors } } },
      async (request) => {
        const route = resolve(request.params);
        const layers = app.serving.require().runtime.library.backbone.numLayers;
        return { name: route.name, versions: [route.version], platform: PACKAGE.name, inputs: [{ name: TEXT_INPUT, datatype: "BYTES", shape: [-1] }], outputs: outputMetadata(route, layers) };
      },
    );
    app.get<{ Params: ModelParams }>(
      `${path}/ready`,
      {
        schema: {
          summary: `Model readiness${which}`,
          operationId: versioned ? "oipModelVersionReady" : "oipModelReady",
          tags,
          params: modelParams,
          response: { 200: { type: "object", required: ["name", "ready"], properties: { name: { type: "string" }, ready: { type: "boolean" } } }, ...modelErrors },
        },
      },
      async (request) => ({ name: resolve(request.params).name, ready: true }),
    );
    app.post<{ Params: ModelParams; Body: InferBody }>(
      `${path}/infer`,
      {
        schema: {
          summary: `Infer${which}`,
          description:
            `One input, \`${TEXT_INPUT}\`: a BYTES tensor of texts, shape [n] or [n, 1], at most ${config.maxInputs} texts of at most ${config.maxInputChars} characters. ` +
            "Outputs: probabilities and logits (FP32, [n, labels]; tagging heads [n, tokens, labels], shorter inputs padded with 0), label (BYTES, [n]; tagging [n, tokens], padded with empty strings), " +
            "and, when asked for by name, fusion_weights (FP32, [n, layers, adapters]: the attention each adapter received, averaged over the input's tokens). " +
            "JSON data, or the binary tensor extension (Inference-Header-Content-Length).",
          operationId: versioned ? "oipModelVersionInfer" : "oipModelInfer",
          tags,
          params: modelParams,
          body: inferBody,
          response: { 200: inferAnswer, ...oipErrors(PATH_ERRORS, BODY_ERRORS, DRAINING, { 404: ["route_not_found"], 429: ["overloaded"], 503: ["not_ready", "timeout", "inference_failed", "engine_unavailable"] }) },
        },
      },
      async (request, reply) => infer(request, reply, binaryBodies.get(request)),
    );
  }

  function resolve({ model, version }: ModelParams): FusionRoute {
    const route = app.serving.require().runtime.library.route(model);
    if (version !== undefined && version !== route.version) {
      throw new ServingError("not_found", "route_not_found", `route '${route.name}' has no version '${version}'; it serves ${route.version}`);
    }
    return route;
  }

  async function infer(request: FastifyRequest<{ Params: ModelParams; Body: InferBody }>, reply: FastifyReply, binary: Buffer | undefined) {
    const { body, params } = request;
    resolve(params);
    const input = body.inputs[0];
    const texts = readTexts(input, binary);
    if (texts.length === 0 || texts.length > config.maxInputs) throw new BadRequestError("invalid_request", `input '${TEXT_INPUT}' must hold 1 to ${config.maxInputs} texts, got ${texts.length}`);
    const tooLong = texts.findIndex((text) => [...text].length > config.maxInputChars);
    if (tooLong >= 0) throw new BadRequestError("invalid_request", `text ${tooLong} is longer than ${config.maxInputChars} characters`);
    const wanted: readonly OutputName[] = body.outputs?.map((o) => o.name) ?? DEFAULT_OUTPUTS;
    const { route, inputs, timing } = await predict(
      app.serving,
      { route: params.model, texts, explain: wanted.includes("fusion_weights") },
      { consistency: config.libraryConsistency, onRoute: (name) => (request.fusionRoute = name), onRecompute: (name) => app.metrics.recomputed(name) },
    );
    request.predictTiming = timing;
    const outputs = wanted.map((name) => outputTensor(name, route, inputs.map((i) => i.readout)));
    const binaryOutput = (name: string) => body.outputs?.find((o) => o.name === name)?.parameters?.binary_data ?? body.parameters?.binary_data_output ?? false;
    const written = writeAnswer({ model_name: route.name, model_version: route.version, ...(body.id === undefined ? {} : { id: body.id }) }, outputs, binaryOutput);
    if ("json" in written) return written.json;
    return reply.header("content-type", "application/octet-stream").header("inference-header-content-length", String(written.headerLength)).send(written.body);
  }
};

function outputMetadata(route: FusionRoute, layers: number) {
  const labels = route.head.labels.length;
  const tagging = route.head.type === "tagging";
  const perInput = (...rest: number[]) => (tagging ? [-1, -1, ...rest] : [-1, ...rest]);
  return [
    { name: "probabilities", datatype: "FP32", shape: perInput(labels) },
    { name: "logits", datatype: "FP32", shape: perInput(labels) },
    { name: "label", datatype: "BYTES", shape: perInput() },
    { name: "fusion_weights", datatype: "FP32", shape: [-1, layers, route.adapters.length] },
  ];
}

/** One output over every input, row-major; a tagging head's inputs padded to the longest. */
function outputTensor(name: OutputName, route: FusionRoute, readouts: readonly { output: HeadOutput | { tokens: HeadOutput[] }; fusionWeights?: number[][] }[]): OutputTensor {
  const { labels } = route.head;
  if (name === "fusion_weights") {
    const weights = readouts.map((r) => r.fusionWeights ?? []);
    const layers = weights[0]?.length ?? 0;
    return { name, datatype: "FP32", shape: [readouts.length, layers, route.adapters.length], values: weights.flat(2) };
  }
  const rows = readouts.map((r) => ("tokens" in r.output ? r.output.tokens : [r.output]));
  const tagging = route.head.type === "tagging";
  const width = Math.max(...rows.map((r) => r.length));
  const padded = rows.map((r) => (tagging ? [...r, ...Array<HeadOutput | undefined>(width - r.length).fill(undefined)] : r));
  const leading = tagging ? [readouts.length, width] : [readouts.length];
  if (name === "label") {
    const best = (o: HeadOutput | undefined) => (o ? labels[o.probabilities.indexOf(Math.max(...o.probabilities))] : "");
    return { name, datatype: "BYTES", shape: leading, values: padded.flat().map(best) };
  }
  const values = padded.flat().flatMap((o) => (o ? o[name] : Array<number>(labels.length).fill(0)));
  return { name, datatype: "FP32", shape: [...leading, labels.length], values };
}
