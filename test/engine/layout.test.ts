import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FoldCache, routeFeeds, type RouteFeeds } from "../../src/engine/layout.js";
import type { AdapterModule } from "../../src/library/adapterhub.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { TINY_LIBRARY } from "../server/harness.js";
import { TINY_BACKBONE } from "../fixtures.js";

const backbone = await loadBackbone(TINY_BACKBONE);
const library = await AdapterLibrary.open(TINY_LIBRARY, backbone.config);

function identical(t: { same(a: unknown, b: unknown, message: string): void }, a: RouteFeeds, b: RouteFeeds, what: string): void {
  t.same(Object.keys(a).sort(), Object.keys(b).sort(), `${what}: same inputs`);
  const differing = Object.keys(a).filter((name) => a[name].data.length !== b[name].data.length || a[name].data.some((v, i) => !Object.is(v, b[name].data[i])));
  t.same(differing, [], `${what}: every value bit for bit`);
}

t.test("a layout folded through the cache equals one folded afresh, also after one adapter changed", async (t) => {
  const folds = new FoldCache();
  for (const name of ["dyn5", "static2", "a1"]) {
    const route = library.route(name);
    identical(t, routeFeeds(backbone.config, route, "fused", folds), routeFeeds(backbone.config, route), `${name}, first layout`);
  }
  // A retrained adapter: same config, other weights, another content version.
  const dyn5 = library.route("dyn5");
  const old = dyn5.adapters[2];
  const retrained: AdapterModule = {
    ...old,
    version: `${old.version}-retrained`,
    layers: old.layers.map((layer) => layer && { ...layer, upWeight: { shape: layer.upWeight.shape, data: layer.upWeight.data.map((v) => v * 1.5) } }),
  };
  const changed = { adapters: dyn5.adapters.map((a, i) => (i === 2 ? retrained : a)), fusion: dyn5.fusion };
  const viaCache = routeFeeds(backbone.config, changed, "fused", folds);
  identical(t, viaCache, routeFeeds(backbone.config, changed), "dyn5 with a2 retrained");
  const before = routeFeeds(backbone.config, dyn5);
  t.ok(viaCache["l0.out_w"].data.some((v, i) => v !== before["l0.out_w"].data[i]), "and the retrained adapter did change the layout");
});
