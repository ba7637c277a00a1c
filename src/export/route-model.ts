import type { Backbone } from "../engine/backbone.js";
import { buildEncoder } from "../engine/bert-graph.js";
import type { PredictionHead } from "../engine/heads.js";
import type { Int8Mode } from "../engine/int8-mode.js";
import { quantizeRouteFeeds, routeFeeds } from "../engine/layout.js";
import type { RouteModules } from "../engine/weights.js";
import { FLOAT, OnnxGraph } from "../engine/onnx/graph.js";

/** The exported model's inputs and outputs, by name; route.json lists them with their shapes. */
export const EXPORT_INPUTS = ["input_ids", "attention_mask"] as const;
export const EXPORT_OUTPUTS = { logits: "logits", probabilities: "probabilities", fusionWeights: "fusion_weights" } as const;

export interface RouteToExport extends RouteModules {
  readonly name: string;
  readonly head: PredictionHead;
}

/**
 * One route as a standalone ONNX model: the engine's fused graph (bert-graph.ts) with the route's
 * own layout (layout.ts) held as initializers instead of taken as inputs, and the route's head on
 * top, so it computes exactly what the server computes for this route. Inputs: input_ids and
 * attention_mask, int64 [batch, sequence]. Outputs: logits and probabilities ([batch, labels], for
 * a tagging head [batch, sequence, labels]; softmax, or a sigmoid per label for a multi-label
 * head), and for a fusion route fusion_weights [batch, layers, adapters], the fusion attention
 * averaged over each input's tokens (what `explain` answers).
 *
 * `int8`: the backbone and route matrices quantized as the server's int8 engine quantizes them,
 * with that weight range (int8-mode.ts).
 */
export async function buildRouteModel(backbone: Backbone, route: RouteToExport, int8?: Int8Mode): Promise<Uint8Array> {
  const { config } = backbone;
  const feeds = await routeFeeds(config, route);
  const g = new OnnxGraph(int8 ? quantizeRouteFeeds(feeds, config.numLayers, int8.weightMax) : feeds);
  const { hidden, probs } = buildEncoder(g, backbone, "fused", int8 ?? "float32");
  const { head } = route;
  const labels = head.labels.length;
  const rows = head.type === "tagging" ? ["batch", "sequence", labels] : ["batch", labels];

  // Sequence heads read the first token, as AdapterHub's heads do without a pooler (heads.ts).
  let x = head.type === "tagging" ? hidden : g.op("Gather", [hidden, g.ints("head.first_token", [0], [])], { axis: 1 });
  head.linears.forEach((layer, i) => {
    x = g.op("MatMul", [x, g.floats(`head.${i}.w`, layer.weight.shape, layer.weight.data)]);
    if (layer.bias) x = g.op("Add", [x, g.floats(`head.${i}.b`, layer.bias.shape, layer.bias.data)]);
    if (i < head.linears.length - 1) x = activation(g, head.activation, x);
  });
  g.node("Identity", [x], {}, { outputs: [EXPORT_OUTPUTS.logits] });
  g.output(EXPORT_OUTPUTS.logits, FLOAT, rows);
  const probabilities = head.type === "multilabel_classification" ? g.op("Sigmoid", [x]) : g.op("Softmax", [x], { axis: -1 });
  g.node("Identity", [probabilities], {}, { outputs: [EXPORT_OUTPUTS.probabilities] });
  g.output(EXPORT_OUTPUTS.probabilities, FLOAT, rows);

  if (route.fusion) {
    // [L, N, B·T] → [L, N, B, T], summed over each input's real tokens and divided by their number.
    const [ids, mask] = EXPORT_INPUTS;
    const perToken = g.op("Reshape", [probs[0], g.op("Concat", [g.ints("explain.layers_adapters", [config.numLayers, route.adapters.length]), g.op("Shape", [ids])], { axis: 0 })]);
    const realTokens = g.op("Cast", [mask], { to: FLOAT });
    const sums = g.op("ReduceSum", [g.op("Mul", [perToken, realTokens]), g.ints("explain.token_axis", [3])], { keepdims: 0 });
    const lengths = g.op("ReduceSum", [realTokens, g.ints("explain.row_axis", [1])], { keepdims: 0 });
    g.node("Transpose", [g.op("Div", [sums, lengths])], { perm: [2, 0, 1] }, { outputs: [EXPORT_OUTPUTS.fusionWeights] });
    g.output(EXPORT_OUTPUTS.fusionWeights, FLOAT, ["batch", config.numLayers, route.adapters.length]);
  }
  return g.toBytes(`${route.name}${int8 ? `-int8w${int8.weightBits}` : ""}`);
}

/** The head's activation between its layers, in standard ONNX operators. */
function activation(g: OnnxGraph, kind: PredictionHead["activation"], x: string): string {
  switch (kind) {
    case "tanh":
      return g.op("Tanh", [x]);
    case "relu":
      return g.op("Relu", [x]);
    case "sigmoid":
      return g.op("Sigmoid", [x]);
    case "gelu": {
      // The exact (erf) GELU that heads.ts computes: x·(1 + erf(x/√2))/2.
      const constant = (name: string, value: number) => g.shared(name, () => g.floats(name, [], new Float32Array([value])));
      const erf = g.op("Erf", [g.op("Mul", [x, constant("head.gelu.inv_sqrt2", Math.SQRT1_2)])]);
      return g.op("Mul", [g.op("Mul", [x, constant("head.gelu.half", 0.5)]), g.op("Add", [erf, constant("head.gelu.one", 1)])]);
    }
    case "linear":
      return x;
  }
}
