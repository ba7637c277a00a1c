import { join } from "node:path";
import { ModelLoadError, NotFoundError } from "../errors.js";
import type { BackboneConfig } from "../engine/backbone.js";
import { loadAdapter, loadFusion, type AdapterModule, type FusionModule } from "./adapterhub.js";
import { readManifest, type Manifest } from "./manifest.js";
import { assembleRoute, type FusionRoute } from "./route.js";

/** Everything that is live at one moment. Never mutated: a change builds a new state. */
export interface LibraryState {
  readonly adapters: ReadonlyMap<string, AdapterModule>;
  readonly fusions: ReadonlyMap<string, FusionModule>;
  readonly routes: ReadonlyMap<string, FusionRoute>;
}

/**
 * The model library: adapters and fusions by name, and the routes built from them. Reads are
 * lock-free snapshots of `state`; a change is validated completely into a new state and then
 * published by replacing one reference, so a request sees either the old routes or the new ones.
 */
export class AdapterLibrary {
  private current: LibraryState;

  private constructor(
    readonly root: string,
    readonly backbone: BackboneConfig,
    state: LibraryState,
  ) {
    this.current = state;
  }

  static async open(root: string, backbone: BackboneConfig, manifest?: Manifest): Promise<AdapterLibrary> {
    const m = manifest ?? (await readManifest(root));
    const adapters = new Map<string, AdapterModule>();
    for (const [name, version] of Object.entries(m.adapters)) {
      const module = await loadAdapter(join(root, "adapters", name, version), backbone);
      if (module.name !== name) {
        throw new ModelLoadError("malformed_file", `adapters/${name}/${version}: the saved adapter is named '${module.name}', not '${name}'`);
      }
      adapters.set(name, module);
    }
    const fusions = new Map<string, FusionModule>();
    for (const [name, version] of Object.entries(m.fusions)) {
      fusions.set(name, await loadFusion(join(root, "fusions", name, version), backbone));
    }
    return new AdapterLibrary(root, backbone, buildState(backbone, adapters, fusions));
  }

  get state(): LibraryState {
    return this.current;
  }

  route(name: string): FusionRoute {
    const route = this.current.routes.get(name);
    if (!route) throw new NotFoundError("route", name);
    return route;
  }

  /** Validates a whole new set of modules and publishes it in one step; throws and keeps the old on failure. */
  replace(adapters: ReadonlyMap<string, AdapterModule>, fusions: ReadonlyMap<string, FusionModule>): LibraryState {
    const next = buildState(this.backbone, adapters, fusions);
    this.current = next;
    return next;
  }
}

/**
 * Routes: every fusion under its own name, and every adapter that carries a head under the
 * adapter's name. A fusion naming an adapter that is not loaded is refused here.
 */
export function buildState(
  backbone: BackboneConfig,
  adapters: ReadonlyMap<string, AdapterModule>,
  fusions: ReadonlyMap<string, FusionModule>,
): LibraryState {
  const routes = new Map<string, FusionRoute>();
  for (const [name, adapter] of adapters) {
    if (adapter.head) routes.set(name, assembleRoute(name, backbone, [adapter], null, adapter.head));
  }
  for (const [name, fusion] of fusions) {
    if (routes.has(name)) {
      throw new ModelLoadError("unsupported_config", `fusion route '${name}' has the same name as an adapter route`);
    }
    const members = fusion.adapters.map((a) => {
      const module = adapters.get(a);
      if (!module) {
        throw new ModelLoadError("unknown_adapter", `fusion '${name}' fuses adapter '${a}', which is not loaded`);
      }
      return module;
    });
    routes.set(name, assembleRoute(name, backbone, members, fusion, fusion.head));
  }
  return { adapters, fusions, routes };
}
