import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { post, startServer, warmRoutes } from "../server/harness.js";
import { PAPER_LIBRARY, SCALE_FIXTURES, writeScaleLibrary } from "../fixtures/scale-library.js";

/**
 * Numerics at the AdapterFusion paper's scale: a BERT-base-shaped backbone, 16 seq_bn adapters and a
 * dynamic fusion over all 16, written by the generator of python/fixtures/make_scale_fixtures.py. The
 * server's logits over HTTP must lie as close to `adapters` run in float64 as `adapters`' own float32
 * logits do, within a factor of 3.
 */
const MAX_RATIO = 3;

interface References {
  route: string;
  texts: string[];
  labels: string[];
  logits_float64: number[][];
  logits_float32: number[][];
}

const references: References = JSON.parse(readFileSync(join(SCALE_FIXTURES, "references.json"), "utf8"));

function largestDiff(ours: number[][], theirs: number[][]): number {
  let worst = 0;
  ours.forEach((row, i) => row.forEach((v, c) => (worst = Math.max(worst, Math.abs(v - theirs[i][c])))));
  return worst;
}

const library = await mkdtemp(join(tmpdir(), "scale-library-"));
t.teardown(() => rm(library, { recursive: true, force: true }));
await writeScaleLibrary(library, PAPER_LIBRARY);
const { url } = await startServer(t, { library, threads: 0 });

for (const form of ["unfolded (its first requests)", "folded (its layout resident)"]) {
  t.test(`${references.route} (BERT-base, 16 adapters), ${form}: logits within ${MAX_RATIO}x adapters' float32 error of float64`, async (t) => {
    if (form.startsWith("folded")) await warmRoutes(url, [references.route]);
    const answer = await post(`${url}/v1/predict/${references.route}`, { inputs: references.texts, raw_scores: true });
    if (answer.status !== 200) return t.fail(`predict answered ${answer.status}: ${answer.text.slice(0, 300)}`);
    const logits: number[][] = answer.body.predictions.map((p: { logits: Record<string, number> }) => references.labels.map((l) => p.logits[l]));
    const ours = largestDiff(logits, references.logits_float64);
    const theirs = largestDiff(references.logits_float32, references.logits_float64);
    const ratio = ours / theirs;
    t.comment(`max |server - adapters fp64| ${ours.toExponential(2)}, max |adapters fp32 - fp64| ${theirs.toExponential(2)}, ratio ${ratio.toFixed(2)}`);
    t.ok(ratio <= MAX_RATIO, `error ratio ${ratio.toFixed(2)} ≤ ${MAX_RATIO}`);
  });
}
