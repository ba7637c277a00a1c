import { loadBackbone } from "../engine/backbone.js";
import { EngineThread, type AssemblyObserver } from "../engine/engine-thread.js";
import type { Device } from "../engine/engine.js";
import type { Int8WeightChoice } from "../engine/int8-mode.js";
import { resolvePrecision } from "../engine/precision.js";
import type { PrecisionChoice } from "../engine/products.js";
import { TextTokenizer } from "../engine/tokenizer.js";
import { AdapterLibrary } from "../library/library.js";
import { isObjectStoreUrl, ObjectLibraryStore } from "../library/object-store.js";
import { LibraryStore, type VersionStore } from "../library/store.js";
import type { Log } from "./log.js";
import { followStore } from "./replica.js";

/** What loading a model library needs to know, built from the configuration by the caller. */
export interface RuntimeOptions {
  /** A folder, or an s3://bucket/prefix URL. */
  readonly library: string;
  readonly objectStore: {
    readonly cacheDir: string | undefined;
    readonly endpoint: string | undefined;
    /** Absent: the S3 client decides. */
    readonly pathStyle: boolean | undefined;
    readonly timeoutMs: number;
    readonly pollMs: number;
  };
  readonly device: Device;
  readonly precision: PrecisionChoice;
  readonly int8Weights: Int8WeightChoice;
  readonly threads: number;
  readonly routeSlots: number;
  readonly directRouteSlots: number;
  /** Inputs of a full pass, for the precision probe. */
  readonly maxBatchSize: number;
  readonly residency: { readonly maxRoutes: number; readonly maxBytes: number; readonly pinned: ReadonlySet<string> };
  /** The sequence length served, given the backbone's position limit; throws when none fits. */
  readonly maxSeqLen: (maxPositions: number) => number;
  /** Longest one module may take to read and validate. */
  readonly moduleReadTimeoutMs: number;
}

/** Everything loaded from the model library: what a prediction needs. */
export interface ModelRuntime {
  readonly library: AdapterLibrary;
  readonly engine: EngineThread;
  readonly tokenizer: TextTokenizer;
  readonly maxSeqLen: number;
  /** The precision served, and why: as asked, or what --precision auto measured. */
  readonly precision: { readonly precision: "float32" | "int8"; readonly reason: string };
  /** Stops following a shared store's changes, releases the store and ends the module reader's thread. */
  readonly close: () => Promise<void>;
}

/**
 * Starts the engine on the backbone named by the library's manifest (in its own threads), then
 * opens the library with the engine as its route host, loads the tokenizer, and follows a shared
 * store's changes.
 */
export async function loadRuntime(options: RuntimeOptions, log: Log, observer?: AssemblyObserver): Promise<ModelRuntime> {
  const started = Date.now();
  const store = openStore(options);
  const read = await store.readManifest();
  const backboneDir = await store.backboneDir(read.manifest);
  const precision = await resolvePrecision(options.precision, () => loadBackbone(backboneDir), {
    device: options.device,
    threads: options.threads,
    int8Weights: options.int8Weights,
    slots: options.routeSlots,
    batchInputs: options.maxBatchSize,
  });
  const engine = await EngineThread.start(
    {
      backboneDir,
      device: options.device,
      precision: precision.precision,
      int8Weights: options.int8Weights,
      threads: options.threads,
      slots: options.routeSlots,
      directSlots: options.directRouteSlots,
      residency: options.residency,
    },
    observer,
  );
  try {
    const maxSeqLen = options.maxSeqLen(engine.backbone.maxPositions);
    const library = await AdapterLibrary.open(store, engine.backbone, engine, read, options.moduleReadTimeoutMs);
    const tokenizer = await TextTokenizer.load(backboneDir, maxSeqLen);
    const { routes, adapters, fusions } = library.state;
    log.info(
      {
        library: options.library,
        backbone: backboneDir,
        routes: [...routes.keys()],
        adapters: adapters.size,
        fusions: fusions.size,
        maxSeqLen,
        precision: precision.precision,
        precisionReason: precision.reason,
        int8: engine.int8,
        routeSlots: options.routeSlots,
        directRouteSlots: options.directRouteSlots,
        ms: Date.now() - started,
      },
      "model library loaded",
    );
    const stop = store.shared ? followStore(library, options.objectStore.pollMs, log) : () => undefined;
    return {
      library,
      engine,
      tokenizer,
      maxSeqLen,
      precision,
      close: async () => {
        stop();
        store.close();
        await library.close();
      },
    };
  } catch (err) {
    await engine.close();
    store.close();
    throw err;
  }
}

/** The one place that decides where a library lives: a URL names an object store, anything else a folder. */
function openStore({ library, objectStore }: RuntimeOptions): VersionStore {
  if (!isObjectStoreUrl(library)) return new LibraryStore(library);
  return new ObjectLibraryStore({ url: library, ...objectStore });
}
