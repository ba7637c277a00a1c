import { parseArgs } from "node:util";
import { DEFAULT_LIBRARY } from "../config.js";
import { exportRoute } from "./export-route.js";

const USAGE = `usage: fusion-serve export --route NAME --out DIR [--library DIR] [--precision float32|int8] [--int8-weights 7|8] [--max-seq-len N]
       (the same: npm run export -- --route NAME --out DIR ...)

Writes route NAME of the model library as a standalone ONNX model: DIR/model.onnx (the route's weights and
head folded in; inputs input_ids and attention_mask, outputs logits, probabilities and, for a fusion,
fusion_weights), DIR/tokenizer.json and DIR/route.json (labels, input and output names and shapes,
maximum length and truncation).

  --library DIR        the model library (default: models/ of this package)
  --precision P        float32 (default) or int8, quantized as the server's --precision int8
  --int8-weights B     7 (default: exact on every CPU) or 8 (exact only where the CPU sums int8 products
                       in 32 bits: VNNI, AMX, ARM)
  --max-seq-len N      longest input recorded in route.json (default: as the server's, 128 or the
                       backbone's positions if fewer)`;

function fail(message: string): never {
  console.error(`fusion-serve export: ${message}\n\n${USAGE}`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      route: { type: "string" },
      out: { type: "string" },
      library: { type: "string", default: DEFAULT_LIBRARY },
      precision: { type: "string", default: "float32" },
      "int8-weights": { type: "string", default: "7" },
      "max-seq-len": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  }));
} catch (err) {
  fail((err as Error).message);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const { route, out, library, precision } = values;
const int8Weights = values["int8-weights"];
if (!route || !out) fail("--route and --out are required");
if (precision !== "float32" && precision !== "int8") fail(`--precision must be float32 or int8, not '${precision}'`);
if (int8Weights !== "7" && int8Weights !== "8") fail(`--int8-weights must be 7 or 8, not '${int8Weights}'`);
const maxSeqLen = values["max-seq-len"] === undefined ? undefined : Number(values["max-seq-len"]);
if (maxSeqLen !== undefined && !Number.isInteger(maxSeqLen)) fail(`--max-seq-len must be an integer, not '${values["max-seq-len"]}'`);

try {
  const description = await exportRoute({ library, route, out, precision, int8Weights, maxSeqLen });
  console.log(
    `exported route '${description.route}' (version ${description.version}, ${description.precision}, ${description.head_type}, ` +
      `${description.labels.length} labels) to ${out}: ${Object.values(description.files).join(", ")}, route.json`,
  );
} catch (err) {
  console.error(`fusion-serve export: ${(err as Error).message}`);
  process.exit(1);
}
