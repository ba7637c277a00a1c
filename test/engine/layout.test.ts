import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { routeFeeds } from "../../src/engine/layout.js";
import { routeInputs } from "../../src/engine/bert-graph.js";
import { loadFusion } from "../../src/library/adapterhub.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { TINY_LIBRARY } from "../server/harness.js";
import { TINY_BACKBONE } from "../fixtures.js";

const backbone = await loadBackbone(TINY_BACKBONE);
const library = await AdapterLibrary.open(TINY_LIBRARY, backbone.config);
const d = backbone.config.hiddenSize;

/** a [n, k] · b [k, m], in float64. */
function product(a: ArrayLike<number>, b: ArrayLike<number>, n: number, k: number, m: number): Float64Array {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) for (let c = 0; c < m; c++) out[i * m + c] += a[i * k + j] * b[j * m + c];
  return out;
}
const transposed = (a: ArrayLike<number>, rows: number, cols: number) => {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
};

/**
 * The fold as docs/design.md §2 writes it, M = W_qᵀ·W_k first, every product in float64: what
 * the layout's float32 products must reproduce to float32 rounding.
 */
t.test("a fusion's folded layout equals the design's products computed in float64", async (t) => {
  for (const name of ["dyn5", "static2"]) {
    const route = library.route(name);
    // The fusion as saved: the library serves it with only the score matrix formed from W_q and W_k.
    const fusion = await loadFusion(route.fusion!.dir, backbone.config);
    const feeds = await routeFeeds(backbone.config, route);
    const n = route.adapters.length;
    // Adapters of other bottleneck sizes are padded to the largest.
    const r = Math.max(...route.adapters.map((a) => a.layers[0]!.downBias.shape[0]));
    const k = n * r;
    let worst = 0;
    let scale = 0;
    for (let l = 0; l < backbone.config.numLayers; l++) {
      const f = fusion.layers[l];
      const m = product(transposed(f.queryWeight.data, d, d), f.keyWeight.data, d, d, d);
      const mBias = product(f.queryBias.data, f.keyWeight.data, 1, d, d);
      const value = f.valueWeight ? transposed(f.valueWeight.data, d, d) : null;
      const inW = feeds[routeInputs(l).inWeight].data;
      const inB = feeds[routeInputs(l).inBias].data;
      const outW = feeds[routeInputs(l).outWeight].data;
      route.adapters.forEach((adapter, i) => {
        const layer = adapter.layers[l]!;
        const own = layer.downBias.shape[0];
        const upT = transposed(layer.upWeight.data, own, d);
        const expect = (got: number, want: number) => {
          worst = Math.max(worst, Math.abs(got - want));
          scale = Math.max(scale, Math.abs(want));
        };
        const scoreUp = product(m, upT, d, d, own);
        const scoreUpBias = product(m, layer.upBias.data, d, d, 1);
        const biasUp = product(mBias, upT, 1, d, own);
        for (let row = 0; row < d; row++) {
          for (let c = 0; c < own; c++) {
            expect(inW[row * (2 * k + n) + i * r + c], layer.downWeight.data[row * own + c]);
            expect(inW[row * (2 * k + n) + k + i * r + c], scoreUp[row * own + c]);
          }
          expect(inW[row * (2 * k + n) + 2 * k + i], scoreUpBias[row]);
        }
        for (let c = 0; c < own; c++) expect(inB[k + i * r + c], biasUp[c]);
        const up = value ? product(layer.upWeight.data, value, own, d, d) : layer.upWeight.data;
        const upBias = value ? product(layer.upBias.data, value, 1, d, d) : layer.upBias.data;
        for (let j = 0; j < own * d; j++) expect(outW[i * r * d + j], up[j]);
        for (let j = 0; j < d; j++) expect(outW[(k + i) * d + j], upBias[j]);
      });
    }
    t.ok(worst <= 1e-5 * scale, `${name}: largest difference ${worst.toExponential(2)} of values up to ${scale.toExponential(2)}`);
  }
});

t.test("a single adapter's layout is its own weights, with zero score terms", async (t) => {
  const route = library.route("a1");
  const feeds = await routeFeeds(backbone.config, route);
  const layer = route.adapters[0].layers[0]!;
  const r = layer.downBias.shape[0];
  const inW = feeds[routeInputs(0).inWeight].data;
  const width = 2 * r + 1;
  t.ok(Array.from({ length: d * r }, (_, j) => inW[Math.floor(j / r) * width + (j % r)] === layer.downWeight.data[j]).every(Boolean), "down-projection in place");
  t.ok(Array.from({ length: d }, (_, row) => inW.subarray(row * width + r, (row + 1) * width).every((v) => v === 0)).every(Boolean), "score columns zero");
  t.same(Array.from(feeds[routeInputs(0).outWeight].data), [...layer.upWeight.data, ...layer.upBias.data], "out_w = [W_up ; b_up]");
});
