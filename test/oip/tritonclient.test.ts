import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import t from "tap";
import { post, startServer } from "../server/harness.js";

// Triton's own HTTP client (tritonclient, from PyPI) against the server: what a KServe or Triton
// user runs. Its Python environment is made once, in .venv-oip/ of the checkout, from requirements.txt.

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, "..", "..");
const VENV = process.env.OIP_TEST_VENV ?? join(ROOT, ".venv-oip");
const PYTHON = join(VENV, "bin", "python");
const REQUIREMENTS = join(import.meta.dirname, "requirements.txt");
const TEXTS = ["a good day", "a very bad day indeed"];

async function clientEnvironment(): Promise<void> {
  const wanted = (await readFile(REQUIREMENTS, "utf8")).trim().replace(/\[.*\]/, "");
  const installed = await run(PYTHON, ["-m", "pip", "freeze"]).then((r) => r.stdout, () => "");
  if (installed.split("\n").includes(wanted)) return;
  await run("python3", ["-m", "venv", VENV]);
  await run(PYTHON, ["-m", "pip", "install", "--quiet", "-r", REQUIREMENTS], { timeout: 600_000 });
}

t.test("tritonclient: ready, model metadata, infer with JSON and binary tensors equal to /v1, a 404 for an unknown model", { timeout: 900_000 }, async (t) => {
  await clientEnvironment();
  const { url } = await startServer(t);
  const expected = (await post(`${url}/v1/predict/dyn2`, { inputs: TEXTS, explain: true })).body;
  const layers = expected.predictions[0].fusion_weights.length;
  const labels = Object.keys(expected.predictions[0].scores);
  const want: number[][] = expected.predictions.map((p: { scores: Record<string, number> }) => labels.map((l) => p.scores[l]));
  const { stdout } = await run(PYTHON, [join(import.meta.dirname, "client.py"), url, "dyn2", ...TEXTS], { timeout: 120_000 });
  const seen = JSON.parse(stdout);
  t.same([seen.live, seen.ready, seen.model_ready], [true, true, true], "is_server_live, is_server_ready, is_model_ready");
  t.match(seen.metadata, { name: "dyn2", versions: [expected.version], inputs: [{ name: "text", datatype: "BYTES" }] }, "get_model_metadata");
  const diff = (got: number[][]) => Math.max(...got.flatMap((row, i) => row.map((p, j) => Math.abs(p - want[i][j]))));
  for (const kind of ["json", "binary"]) {
    const d = diff(seen[kind].probabilities);
    t.ok(d <= 1e-6, `infer, ${kind} tensors: max |probabilities - /v1 scores| ${d.toExponential(2)} (≤ 1e-6)`);
    t.same(seen[kind].label, expected.predictions.map((p: { label: string }) => p.label), `infer, ${kind} tensors: labels as /v1`);
    t.same(seen[kind].fusion_weights_shape, [2, layers, 2], `infer, ${kind} tensors: fusion_weights [inputs, layers, adapters]`);
  }
  t.ok(diff(seen.defaults) <= 1e-6, "infer with no outputs named: the defaults, in binary");
  t.equal(seen.unknown?.status, "404", "an unknown model: 404");
  t.match(seen.unknown?.message, /no-such-route/, "with the protocol's error message");
});
