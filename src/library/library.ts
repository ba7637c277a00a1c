import { performance } from "node:perf_hooks";
import { ConflictError, ModelLoadError, NotFoundError, UnavailableError } from "../errors.js";
import type { BackboneConfig } from "../engine/backbone.js";
import type { PredictionHead } from "../engine/heads.js";
import { tensorBytes } from "../engine/shared-memory.js";
import type { AdapterModule, FusionModule } from "./adapterhub.js";
import type { Manifest } from "./manifest.js";
import { ModuleReader } from "./module-reader.js";
import { assembleRoute, type FusionRoute } from "./route.js";
import { LibraryStore, type ManifestVersion, type ModuleKind, type VersionStore } from "./store.js";

/** Everything that is live at one moment. Never mutated: a change builds a new state. */
export interface LibraryState {
  readonly manifest: Manifest;
  readonly adapters: ReadonlyMap<string, AdapterModule>;
  readonly fusions: ReadonlyMap<string, FusionModule>;
  readonly routes: ReadonlyMap<string, FusionRoute>;
}

export interface ChangeResult {
  readonly kind: ModuleKind;
  readonly name: string;
  /** Content version of the module now live (null after a delete). */
  readonly version: string | null;
  /** Version folder now live, and the one a rollback would return to. */
  readonly folder: string | null;
  readonly previousFolder: string | null;
  /** Routes whose version changed. */
  readonly routes: readonly string[];
  /** Routes the change took away (an adapter replaced by a save without a head serves no route of its own). */
  readonly removedRoutes: readonly string[];
}

/** Whether the live state is the store's current manifest: always, for a folder only this server changes. */
export interface SyncStatus {
  readonly inSync: boolean;
  /** Why not: the store cannot be read, or what the manifest names cannot be loaded. */
  readonly error: string | undefined;
  /** Tag of the manifest live here. */
  readonly etag: string | undefined;
}

/** Version folders kept of each module unless asked otherwise: the live one, the rollback target and a few before them. */
export const KEEP_VERSIONS = 5;

/**
 * Where routes are served: the engine installs a route before the library publishes it, and is
 * told when a published route has been replaced or removed.
 */
export interface RouteHost {
  register(routes: readonly FusionRoute[]): Promise<void>;
  retire(routes: readonly FusionRoute[]): void;
}

/**
 * The model library: adapters and fusions by name, and the routes built from them.
 *
 * Reads are snapshots of `state`. A change loads and validates the new module completely
 * (config, shapes against the backbone, finite weights, the adapters a fusion names), builds the
 * whole next state, writes it through to disk, and only then publishes it by replacing one
 * reference. A failure at any step leaves the live state, and the files it came from, untouched.
 * Changes run one at a time.
 *
 * A store shared with other replicas may change underneath: `refresh` loads what its manifest
 * names and publishes it the same way, and every change first catches up with the store and then
 * replaces the manifest only if it is still the one the change was built on.
 */
export class AdapterLibrary {
  private current: LibraryState;
  private changes: Promise<unknown> = Promise.resolve();
  private etag: string | undefined;
  private status: SyncStatus;
  /** When the manifest read that the live state is known to match was sent (performance.now()). */
  private checkedAt = -Infinity;
  /** The latest check of `confirm`: when its read was sent, and its end. */
  private lastCheck: { readonly sent: number; readonly done: Promise<void> } | undefined;

  private constructor(
    private readonly store: VersionStore,
    readonly backbone: BackboneConfig,
    private readonly reader: ModuleReader,
    state: LibraryState,
    etag: string | undefined,
    private readonly host: RouteHost | undefined,
  ) {
    this.current = state;
    this.etag = etag;
    this.status = { inSync: true, error: undefined, etag };
  }

  /**
   * Opens a library folder, or any store. Without a host the library only loads and validates
   * (tests, tools); the server passes its engine. `read` is the manifest already read, if any.
   */
  static async open(source: string | VersionStore, backbone: BackboneConfig, host?: RouteHost, read?: ManifestVersion, readBudgetMs?: number): Promise<AdapterLibrary> {
    const store = typeof source === "string" ? new LibraryStore(source) : source;
    const { manifest, etag } = read ?? (await store.readManifest());
    await store.open(manifest);
    const reader = new ModuleReader(backbone, readBudgetMs);
    const state = await loadState(store, reader, manifest, undefined);
    await host?.register([...state.routes.values()]);
    return new AdapterLibrary(store, backbone, reader, state, etag, host);
  }

  get state(): LibraryState {
    return this.current;
  }

  /** Ends the thread that reads modules (once it is out of ONNX Runtime); a later read starts another. */
  close(): Promise<void> {
    return this.reader.close();
  }

  get sync(): SyncStatus {
    return this.status;
  }

  /** Whether other replicas may change the manifest: only then can this one fall behind it. */
  get shared(): boolean {
    return this.store.shared;
  }

  get location(): string {
    return this.store.location;
  }

  /** Bytes of the tensors of every live module (adapters, fusions, their heads). */
  get moduleBytes(): number {
    const { adapters, fusions } = this.current;
    const seen = new Set<ArrayBufferLike>();
    return [...adapters.values(), ...fusions.values()].reduce((sum, module) => sum + tensorBytes(module, seen), 0);
  }

  /**
   * Catches up with the store: loads and publishes what its manifest names, if that changed. A
   * manifest that cannot be loaded leaves the live state as it was, and is tried again next time.
   * Returns the routes whose version changed.
   */
  refresh(): Promise<string[]> {
    return this.serialize(async () => {
      try {
        return await this.catchUp();
      } catch {
        return [];
      }
    });
  }

  /**
   * Resolves once the live state has been compared with the store's manifest by a read sent at or
   * after `since` (performance.now()), and caught up with it if it had changed: a route the live
   * state then holds was the manifest's at a moment after `since`. Callers whose `since` precedes
   * a read already sent share it. The read is a conditional GET, made beside any change in
   * progress; only a manifest that did change waits its turn to be loaded. Immediately for a
   * store nobody else changes, and while this replica is out of sync (it cannot read or load the
   * manifest; its poll keeps retrying, and /ready says so); a read that fails confirms nothing.
   */
  confirm(since: number): Promise<void> {
    if (!this.store.shared || !this.status.inSync || this.checkedAt >= since) return Promise.resolve();
    if (this.lastCheck && this.lastCheck.sent >= since) return this.lastCheck.done;
    const sent = performance.now();
    const done = this.checkManifest(sent);
    this.lastCheck = { sent, done };
    return done;
  }

  private async checkManifest(sent: number): Promise<void> {
    let changed: boolean;
    try {
      changed = (await this.store.pollManifest(this.etag)) !== undefined;
    } catch {
      return;
    }
    // Unchanged: the manifest was the live state's own when the read arrived, after `sent`.
    if (!changed) this.checkedAt = Math.max(this.checkedAt, sent);
    else await this.serialize(() => this.catchUp().catch(() => undefined));
  }

  private async catchUp(): Promise<string[]> {
    const before = this.current;
    const sent = performance.now();
    try {
      const found = await this.store.pollManifest(this.etag);
      if (found) {
        if (found.manifest.backbone !== before.manifest.backbone) {
          throw new ModelLoadError("unsupported_config", `the manifest now names backbone '${found.manifest.backbone}' (serving '${before.manifest.backbone}'): a new backbone needs a restart`);
        }
        const next = await loadState(this.store, this.reader, found.manifest, before);
        await this.switchTo(next, async () => found.etag);
      }
    } catch (err) {
      const message = (err as Error).message;
      this.status = { inSync: false, error: message, etag: this.etag };
      throw err instanceof UnavailableError ? err : new UnavailableError("library_out_of_sync", `this replica cannot load the library's current manifest, so it cannot change it: ${message}`);
    }
    this.status = { inSync: true, error: undefined, etag: this.etag };
    this.checkedAt = Math.max(this.checkedAt, sent);
    return [...this.current.routes].filter(([n, r]) => before.routes.get(n)?.version !== r.version).map(([n]) => n);
  }

  route(name: string): FusionRoute {
    const route = this.current.routes.get(name);
    if (!route) throw new NotFoundError("route", name);
    return route;
  }

  /** Resolves a path given by an operator to a real folder; it and its files must stay inside the library root. */
  resolveInside(userPath: string): Promise<string> {
    return this.store.resolveInside(userPath);
  }

  /** A fresh folder inside the library for an upload; the caller removes it. */
  uploadFolder(): Promise<string> {
    return this.store.uploadFolder();
  }

  /**
   * Loads or replaces an adapter from an AdapterHub save directory inside the library; at most
   * `keepVersions` version folders of it remain.
   */
  putAdapter(name: string, sourceDir: string, keepVersions = KEEP_VERSIONS): Promise<ChangeResult> {
    return this.serialize(async () => {
      await this.catchUp();
      const module = await this.reader.adapter(sourceDir, name);
      return this.commit("adapters", name, module, sourceDir, keepVersions);
    });
  }

  /** Creates or replaces a fusion route from an AdapterHub fusion save directory (with its head), as `putAdapter`. */
  putFusion(name: string, sourceDir: string, keepVersions = KEEP_VERSIONS): Promise<ChangeResult> {
    return this.serialize(async () => {
      await this.catchUp();
      const module = await this.reader.fusion(sourceDir, name);
      return this.commit("fusions", name, module, sourceDir, keepVersions);
    });
  }

  /** Returns a module to the version it had before its last change (and back again, if repeated). */
  rollback(kind: ModuleKind, name: string): Promise<ChangeResult> {
    return this.serialize(async () => {
      await this.catchUp();
      const state = this.current;
      const live = state.manifest[kind][name];
      if (live === undefined) throw new NotFoundError(kind === "adapters" ? "adapter" : "fusion", name);
      const target = state.manifest.previous?.[kind][name];
      if (target === undefined) throw new ConflictError("no_previous_version", `${kind} '${name}' has no previous version to roll back to`);
      const dir = await this.store.fetch(kind, name, target);
      const module = kind === "adapters" ? await this.reader.adapter(dir, name) : await this.reader.fusion(dir, name);
      return this.publish(kind, name, module, this.nextState(kind, name, module), target, live);
    });
  }

  remove(kind: ModuleKind, name: string): Promise<ChangeResult> {
    return this.serialize(async () => {
      await this.catchUp();
      const state = this.current;
      if (state.manifest[kind][name] === undefined) throw new NotFoundError(kind === "adapters" ? "adapter" : "fusion", name);
      if (kind === "adapters") {
        const users = [...state.fusions].filter(([, f]) => f.adapters.includes(name)).map(([n]) => n);
        if (users.length > 0) {
          throw new ConflictError("adapter_in_use", `adapter '${name}' is used by fusion route(s) ${users.join(", ")}; delete or replace them first`);
        }
      }
      const adapters = new Map(state.adapters);
      const fusions = new Map(state.fusions);
      (kind === "adapters" ? adapters : fusions).delete(name);
      const manifest = withEntry(state.manifest, kind, name, null, null);
      const next = buildState(manifest, adapters, fusions, state.routes);
      await this.switchTo(next, () => this.store.writeManifest(manifest, this.etag));
      await this.store.removeModule(kind, name, state.manifest);
      const removedRoutes = [...state.routes.keys()].filter((n) => !next.routes.has(n));
      return { kind, name, version: null, folder: null, previousFolder: null, routes: [name], removedRoutes };
    });
  }

  private async commit(kind: ModuleKind, name: string, module: AdapterModule | FusionModule, sourceDir: string, keepVersions: number): Promise<ChangeResult> {
    const { manifest } = this.current;
    const live = manifest[kind][name];
    // The same files again change nothing: a new folder would push the rollback target out.
    if (live !== undefined && (kind === "adapters" ? this.current.adapters : this.current.fusions).get(name)?.version === module.version) {
      return { kind, name, version: module.version, folder: live, previousFolder: manifest.previous?.[kind][name] ?? null, routes: [], removedRoutes: [] };
    }
    // The next state is validated before anything is written, so a refused change leaves no folder.
    const next = this.nextState(kind, name, module);
    const folder = await this.store.importVersion(kind, name, sourceDir);
    const result = await this.publish(kind, name, module, next, folder, live ?? null);
    // The change is live and durable; a failed prune only leaves a folder the next change prunes.
    await this.store.prune(kind, name, this.current.manifest, keepVersions).catch(() => undefined);
    return result;
  }

  private async publish(
    kind: ModuleKind,
    name: string,
    module: AdapterModule | FusionModule,
    validated: LibraryState,
    folder: string,
    previousFolder: string | null,
  ): Promise<ChangeResult> {
    const before = this.current;
    const manifest = withEntry(before.manifest, kind, name, folder, previousFolder);
    const next = { ...validated, manifest };
    await this.switchTo(next, () => this.store.writeManifest(manifest, this.etag));
    const routes = [...next.routes].filter(([n, r]) => before.routes.get(n)?.version !== r.version).map(([n]) => n);
    const removedRoutes = [...before.routes.keys()].filter((n) => !next.routes.has(n));
    return { kind, name, version: module.version, folder, previousFolder, routes, removedRoutes };
  }

  /**
   * Installs the routes `next` adds, makes the change durable (`write` gives the manifest's new
   * tag), then publishes `next` in one step and retires the routes it replaced. Nothing is
   * published when installing or writing fails.
   */
  private async switchTo(next: LibraryState, write: () => Promise<string | undefined>): Promise<void> {
    const before = this.current;
    const added = [...next.routes.values()].filter((route) => before.routes.get(route.name) !== route);
    await this.host?.register(added);
    let etag: string | undefined;
    try {
      etag = await write();
    } catch (err) {
      this.host?.retire(added);
      throw err;
    }
    this.etag = etag;
    this.status = { inSync: true, error: undefined, etag };
    this.current = next;
    this.host?.retire([...before.routes.values()].filter((route) => next.routes.get(route.name) !== route));
    // Published and durable: a local copy that cannot be removed now is removed after a later change.
    await this.store.keepOnly(next.manifest).catch(() => undefined);
  }

  private nextState(kind: ModuleKind, name: string, module: AdapterModule | FusionModule): LibraryState {
    const state = this.current;
    const adapters = new Map(state.adapters);
    const fusions = new Map(state.fusions);
    if (kind === "adapters") adapters.set(name, module as AdapterModule);
    else fusions.set(name, module as FusionModule);
    return buildState(state.manifest, adapters, fusions, state.routes);
  }

  private serialize<T>(change: () => Promise<T>): Promise<T> {
    const result = this.changes.then(change);
    this.changes = result.catch(() => undefined);
    return result;
  }
}

/**
 * Loads what `manifest` names; modules at the same version folder as in `reuse` are taken from it
 * as they are, so a change loads only what it changed.
 */
async function loadState(store: VersionStore, reader: ModuleReader, manifest: Manifest, reuse: LibraryState | undefined): Promise<LibraryState> {
  const adapters = new Map<string, AdapterModule>();
  for (const [name, version] of Object.entries(manifest.adapters)) {
    const same = reuse?.manifest.adapters[name] === version ? reuse.adapters.get(name) : undefined;
    adapters.set(name, same ?? (await reader.adapter(await store.fetch("adapters", name, version), name)));
  }
  const fusions = new Map<string, FusionModule>();
  for (const [name, version] of Object.entries(manifest.fusions)) {
    const same = reuse?.manifest.fusions[name] === version ? reuse.fusions.get(name) : undefined;
    fusions.set(name, same ?? (await reader.fusion(await store.fetch("fusions", name, version), name)));
  }
  return buildState(manifest, adapters, fusions, reuse?.routes);
}

function withEntry(manifest: Manifest, kind: ModuleKind, name: string, folder: string | null, previous: string | null): Manifest {
  const live = { ...manifest[kind] };
  const prev = { adapters: { ...manifest.previous?.adapters }, fusions: { ...manifest.previous?.fusions } };
  if (folder === null) delete live[name];
  else live[name] = folder;
  if (previous === null) delete prev[kind][name];
  else prev[kind][name] = previous;
  return { ...manifest, [kind]: live, previous: prev };
}

/**
 * Routes: every fusion under its own name, and every adapter that carries a head under the
 * adapter's name. A fusion naming an adapter that is not loaded is refused here. A route whose
 * modules are the very same objects as in `reuse` is kept as is, so a change re-assembles only
 * the routes it touches.
 */
export function buildState(
  manifest: Manifest,
  adapters: ReadonlyMap<string, AdapterModule>,
  fusions: ReadonlyMap<string, FusionModule>,
  reuse: ReadonlyMap<string, FusionRoute> = new Map(),
): LibraryState {
  const routes = new Map<string, FusionRoute>();
  const assemble = (name: string, members: AdapterModule[], fusion: FusionModule | null, head: PredictionHead) => {
    const old = reuse.get(name);
    const same = old && old.fusion === fusion && old.adapters.length === members.length && old.adapters.every((a, i) => a === members[i]);
    routes.set(name, same ? old : assembleRoute(name, members, fusion, head));
  };
  for (const [name, adapter] of adapters) {
    if (adapter.head) assemble(name, [adapter], null, adapter.head);
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
    assemble(name, members, fusion, fusion.head);
  }
  return { manifest, adapters, fusions, routes };
}
