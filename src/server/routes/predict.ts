import type { FastifyPluginAsync } from "fastify";
import type { ServerConfig } from "../../config.js";
import { predict } from "../../core/predict.js";
import type { HeadOutput } from "../../engine/heads.js";
import type { InputReadout } from "../../engine/readout.js";
import type { Encoded } from "../../engine/tokenizer.js";
import type { FusionRoute } from "../../library/route.js";
import { BODY_ERRORS, DRAINING, errorResponses, PATH_ERRORS } from "../errors.js";

/** A multi-label head predicts every label whose sigmoid reaches this. */
const MULTILABEL_THRESHOLD = 0.5;

interface PredictBody {
  inputs: string | string[];
  explain: boolean;
  raw_scores: boolean;
}

const labelMap = (description: string) => ({ type: "object", description, additionalProperties: { type: "number" } }) as const;

const scored = {
  label: { type: "string", description: "The most probable label" },
  score: { type: "number", description: "Probability of `label`" },
  scores: labelMap("Probability of every label: softmax over labels, or per-label sigmoid for multi-label heads"),
  logits: labelMap("Raw head outputs by label (only with raw_scores)"),
} as const;

export const predictionSchema = {
  $id: "Prediction",
  type: "object",
  description:
    "One prediction per input, in input order. Classification heads: label, score, scores. Multi-label heads add `labels`, " +
    "every label whose sigmoid score is at least 0.5. Tagging heads give `tokens` instead: one entry per token, " +
    "special tokens included ([CLS] first, [SEP] last).",
  properties: {
    ...scored,
    labels: { type: "array", items: { type: "string" }, description: "Multi-label heads: every label scoring at least 0.5" },
    tokens: {
      type: "array",
      description: "Tagging heads: per-token predictions",
      items: {
        type: "object",
        required: ["token", "label", "score", "scores"],
        properties: { token: { type: "string", description: "The token as the tokenizer wrote it (e.g. ##ing)" }, ...scored },
      },
    },
    fusion_weights: {
      type: "array",
      description:
        "Only with explain: for every layer, the fusion attention each adapter received, averaged over the input's tokens " +
        "(sums to 1 per layer; exactly 1 for a single-adapter route)",
      items: labelMap("Attention weight by adapter name"),
    },
    truncated: { type: "boolean", description: "True when the text was longer than max-seq-len tokens and its tail was cut" },
  },
} as const;

interface ScoredOutput {
  label: string;
  score: number;
  scores: Record<string, number>;
  logits?: Record<string, number>;
}

interface Prediction extends Partial<ScoredOutput> {
  labels?: string[];
  tokens?: (ScoredOutput & { token: string })[];
  fusion_weights?: Record<string, number>[];
  truncated: boolean;
}

/** POST /v1/predict/:fusion: the body validated by its schema, the prediction by core/predict.ts, the heads' outputs shaped here. */
export const predictRoutes: FastifyPluginAsync<{ config: ServerConfig }> = async (app, { config }) => {
  app.addSchema(predictionSchema);

  app.post<{ Params: { fusion: string }; Body: PredictBody }>(
    "/v1/predict/:fusion",
    {
      schema: {
        summary: "Predict with one route",
        operationId: "predict",
        description:
          "Runs the texts through the route's adapters, fusion and head. Concurrent requests to one route share forward passes. " +
          `Limits: at most ${config.maxInputs} texts of at most ${config.maxInputChars} characters each (400 beyond), ` +
          `a body of at most ${config.maxBodyBytes} bytes (413 beyond). An empty or whitespace-only text is served as the model sees it, [CLS] [SEP] alone, as the adapters library does (data sets hold such texts). ` +
          "Texts longer than max-seq-len tokens are truncated and marked `truncated: true`. " +
          "429 when the queue is full, 503 when no answer came within the request timeout; both carry Retry-After.",
        tags: ["predict"],
        params: {
          type: "object",
          required: ["fusion"],
          properties: {
            fusion: {
              type: "string",
              description: "Route name, as listed by GET /v1/fusions: a fusion route, or an adapter with its own head",
              examples: ["hate-fusion"],
            },
          },
        },
        body: {
          type: "object",
          required: ["inputs"],
          additionalProperties: false,
          properties: {
            inputs: {
              type: ["string", "array"],
              description: "One text, or a list of texts",
              maxLength: config.maxInputChars,
              minItems: 1,
              maxItems: config.maxInputs,
              items: { type: "string", maxLength: config.maxInputChars },
            },
            explain: { type: "boolean", default: false, description: "Add fusion_weights to every prediction" },
            raw_scores: { type: "boolean", default: false, description: "Add the head's raw logits to every prediction" },
          },
          examples: [
            { inputs: "I love this community" },
            { inputs: ["I love this community", "go back where you came from"], explain: true, raw_scores: true },
          ],
        },
        response: {
          200: {
            description: "One prediction per input, in input order",
            type: "object",
            required: ["fusion", "version", "predictions"],
            properties: {
              fusion: { type: "string", description: "The route that answered" },
              version: { type: "string", description: "Content hash of the route's adapters, fusion and head that answered" },
              predictions: { type: "array", items: { $ref: "Prediction#" } },
            },
            examples: [
              {
                fusion: "hate-fusion",
                version: "e11d9da4ce66",
                predictions: [{ label: "not-hate", score: 0.995942886204096, scores: { "not-hate": 0.995942886204096, hate: 0.0040571137959039185 }, truncated: false }],
              },
            ],
          },
          ...errorResponses(PATH_ERRORS, BODY_ERRORS, DRAINING, {
            404: ["route_not_found"],
            429: ["overloaded"],
            503: ["not_ready", "timeout", "inference_failed", "engine_unavailable"],
          }),
        },
      },
    },
    async (request) => {
      const { inputs, explain, raw_scores: rawScores } = request.body;
      const { route, inputs: answered, timing } = await predict(
        app.serving,
        { route: request.params.fusion, texts: typeof inputs === "string" ? [inputs] : inputs, explain },
        { consistency: config.libraryConsistency, onRoute: (name) => (request.fusionRoute = name), onRecompute: (name) => app.metrics.recomputed(name) },
      );
      request.predictTiming = timing;
      return {
        fusion: route.name,
        version: route.version,
        predictions: answered.map(({ readout, encoded }) => formatPrediction(route, readout, encoded, explain, rawScores)),
      };
    },
  );
};

function formatPrediction(route: FusionRoute, readout: InputReadout, encoded: Encoded, explain: boolean, rawScores: boolean): Prediction {
  const { truncated } = encoded;
  const { labels, type } = route.head;
  const scoredOutput = (out: HeadOutput): ScoredOutput => {
    let best = 0;
    out.probabilities.forEach((p, i) => {
      if (p > out.probabilities[best]) best = i;
    });
    const byLabel = (values: readonly number[]) => Object.fromEntries(labels.map((label, i) => [label, values[i]]));
    return {
      label: labels[best],
      score: out.probabilities[best],
      scores: byLabel(out.probabilities),
      ...(rawScores ? { logits: byLabel(out.logits) } : {}),
    };
  };
  const { output } = readout;
  let prediction: Prediction;
  if ("tokens" in output) {
    prediction = { tokens: output.tokens.map((o, t) => ({ token: encoded.tokens[t], ...scoredOutput(o) })), truncated };
  } else {
    prediction = { ...scoredOutput(output), truncated };
    if (type === "multilabel_classification") prediction.labels = labels.filter((_, i) => output.probabilities[i] >= MULTILABEL_THRESHOLD);
  }
  if (explain && readout.fusionWeights) {
    prediction.fusion_weights = readout.fusionWeights.map((layer) => Object.fromEntries(route.adapters.map((a, i) => [a.name, layer[i]])));
  }
  return prediction;
}
