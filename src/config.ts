import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { LibraryConsistency } from "./core/predict.js";
import type { RuntimeOptions } from "./core/runtime.js";
import type { Int8WeightChoice } from "./engine/int8-mode.js";
import { PRECISION_CHOICES, type PrecisionChoice } from "./engine/products.js";
import { KEEP_VERSIONS } from "./library/library.js";
import { READ_BUDGET_MS } from "./library/module-reader.js";
import { SCHEDULING_POLICIES, type SchedulingPolicy } from "./scheduler/plan.js";
import type { SchedulerOptions } from "./scheduler/scheduler.js";

/** Every setting of the server, validated. Built once from flags and environment by `loadConfig`. */
export interface ServerConfig {
  /** A folder, or an s3://bucket/prefix URL. */
  readonly library: string;
  /** An object-store library's local copy of its version folders and backbone; absent: one under the temp folder. */
  readonly libraryCache: string | undefined;
  readonly libraryPollMs: number;
  readonly libraryConsistency: LibraryConsistency;
  /** Absent: the S3 client's own (AWS_ENDPOINT_URL_S3, the config files, or AWS itself). */
  readonly s3Endpoint: string | undefined;
  readonly s3PathStyle: "auto" | "true" | "false";
  readonly s3TimeoutMs: number;
  readonly host: string;
  readonly port: number;
  readonly device: "cpu" | "cuda";
  readonly precision: PrecisionChoice;
  readonly int8Weights: Int8WeightChoice;
  readonly threads: number;
  readonly maxBatchTokens: number;
  readonly maxBatchSize: number;
  readonly maxWaitMs: number;
  readonly routeSlots: number;
  /** Routes one pass serves from their modules unfolded, their layouts not resident (docs/design.md §2). */
  readonly directRouteSlots: number;
  /** Most route layouts resident in the engine at once (docs/design.md §2, "Resident routes"). */
  readonly maxResidentRoutes: number;
  /** Most MiB of route layouts resident at once. */
  readonly maxResidentMib: number;
  /** Routes whose layouts are built at once and never evicted. */
  readonly pinRoutes: readonly string[];
  readonly scheduling: SchedulingPolicy;
  readonly maxQueue: number;
  readonly requestTimeoutMs: number;
  readonly maxInputs: number;
  readonly maxInputChars: number;
  readonly maxBodyBytes: number;
  /** Absent: 128, or the backbone's max_position_embeddings when that is smaller. */
  readonly maxSeqLen: number | undefined;
  readonly shutdownTimeoutMs: number;
  /** Seconds after SIGTERM during which /ready answers 503 while every request is still served. */
  readonly drainSeconds: number;
  readonly logLevel: LogLevel;
  /** Which requests get their log lines (received, completed). */
  readonly accessLog: AccessLog;
  /** Bearer token of the admin API; absent: the admin routes are not served. */
  readonly adminToken: string | undefined;
  readonly maxUploadBytes: number;
  readonly keepVersions: number;
  readonly moduleReadTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly receiveTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly maxConnections: number;
  /** 0: no limit per client address. */
  readonly maxConnectionsPerClient: number;
  /** Bearer token of the prediction API; absent: it is open. */
  readonly apiKey: string | undefined;
  /** Whether /metrics, too, needs the API key. */
  readonly apiKeyMetrics: boolean;
  /** Source commit of this build, for /info and fusion_build_info; absent: unknown. */
  readonly commit: string | undefined;
}

export type LogLevel = (typeof LOG_LEVELS)[number];
const ACCESS_LOGS = ["requests", "all", "off"] as const;
export type AccessLog = (typeof ACCESS_LOGS)[number];

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** A setting that cannot be used; the message names the flag, the variable and the value. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

// dist/config.js and src/config.ts both sit one level below the package root.
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const DEFAULT_LIBRARY = join(PACKAGE_ROOT, "models");
export const DEFAULT_MAX_SEQ_LEN = 128;
export const PACKAGE: { readonly name: string; readonly version: string } = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8"));

interface OptionSpec<K extends keyof ServerConfig> {
  readonly key: K;
  readonly flag: string;
  readonly env: string;
  readonly default: ServerConfig[K];
  /** How --help and the README show the default, where its value does not say it (absent: the value). */
  readonly shown?: string;
  readonly help: string;
  readonly parse: (raw: string) => ServerConfig[K];
}

type AnyOption = { [K in keyof ServerConfig]: OptionSpec<K> }[keyof ServerConfig];

const integer =
  (min: number, max = Number.MAX_SAFE_INTEGER) =>
  (raw: string): number => {
    const value = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new Error(`must be an integer from ${min} to ${max === Number.MAX_SAFE_INTEGER ? "any" : max}`);
    }
    return value;
  };

const oneOf =
  <T extends string>(allowed: readonly T[]) =>
  (raw: string): T => {
    if (!allowed.includes(raw as T)) throw new Error(`must be one of ${allowed.join(", ")}`);
    return raw as T;
  };

const nonEmpty = (raw: string): string => {
  if (!raw.trim()) throw new Error("must not be empty");
  return raw;
};

/** A bearer token: long enough not to be guessed. */
const secret = (raw: string): string => {
  if (raw.trim().length < 16) throw new Error("must be at least 16 characters");
  return raw.trim();
};

const SECRETS: ReadonlySet<keyof ServerConfig> = new Set(["adminToken", "apiKey"]);

export const OPTIONS: readonly AnyOption[] = [
  {
    key: "library",
    flag: "library",
    env: "FUSION_LIBRARY",
    default: DEFAULT_LIBRARY, shown: "models/ of this package",
    help: "model library: a folder (holds library.json), or s3://bucket/prefix on S3-compatible object storage shared by replicas",
    parse: (raw) => (raw.startsWith("s3://") ? s3Url(raw) : resolve(nonEmpty(raw))),
  },
  {
    key: "libraryCache",
    flag: "library-cache",
    env: "FUSION_LIBRARY_CACHE",
    default: undefined, shown: "a folder under the temp folder",
    help: "object-store library: local folder its version folders and backbone are downloaded to",
    parse: (raw) => resolve(nonEmpty(raw)),
  },
  {
    key: "libraryPollMs",
    flag: "library-poll-ms",
    env: "FUSION_LIBRARY_POLL_MS",
    default: 5_000,
    help: "object-store library: how often the manifest is checked for other replicas' changes",
    parse: integer(50, 3_600_000),
  },
  {
    key: "libraryConsistency",
    flag: "library-consistency",
    env: "FUSION_LIBRARY_CONSISTENCY",
    default: "eventual",
    help: "object-store library: eventual (answers come from the manifest of the last poll) or strict (each answer's route version is confirmed against the store's manifest before it is sent; README: Replicas)",
    parse: oneOf(["eventual", "strict"] as const),
  },
  { key: "s3Endpoint", flag: "s3-endpoint", env: "AWS_ENDPOINT_URL", default: undefined, shown: "AWS", help: "S3 endpoint URL of a store other than AWS (SeaweedFS, Ceph RGW, R2, ...)", parse: nonEmpty },
  {
    key: "s3PathStyle",
    flag: "s3-path-style",
    env: "FUSION_S3_PATH_STYLE",
    default: "auto",
    help: "path-style bucket addressing: auto (on when --s3-endpoint is set), true or false",
    parse: oneOf(["auto", "true", "false"] as const),
  },
  { key: "s3TimeoutMs", flag: "s3-timeout-ms", env: "FUSION_S3_TIMEOUT_MS", default: 5_000, help: "object store: longest wait to connect, and for an answer to stall", parse: integer(100, 600_000) },
  { key: "host", flag: "host", env: "HOST", default: "127.0.0.1", help: "address to listen on (0.0.0.0 for every interface)", parse: nonEmpty },
  { key: "port", flag: "port", env: "PORT", default: 8080, help: "TCP port; 0 picks a free one", parse: integer(0, 65535) },
  { key: "device", flag: "device", env: "FUSION_DEVICE", default: "cpu", help: "ONNX Runtime execution provider: cpu or cuda", parse: oneOf(["cpu", "cuda"] as const) },
  {
    key: "precision",
    flag: "precision",
    env: "FUSION_PRECISION",
    default: "float32",
    help: "matrix products of backbone and fusion: float32, int8 (dynamic quantization, CPU only), or auto (int8 where a start-up probe finds it no slower than float32, else float32; README: Precision)",
    parse: oneOf(PRECISION_CHOICES),
  },
  {
    key: "int8Weights",
    flag: "int8-weights",
    env: "FUSION_INT8_WEIGHTS",
    default: "auto",
    help: "bits of the int8 weights: auto (8 where this CPU's integer products cannot saturate, else 7), 8 or 7 (README: Precision)",
    parse: oneOf(["auto", "8", "7"] as const),
  },
  { key: "threads", flag: "threads", env: "FUSION_THREADS", default: 0, help: "intra-op threads of the forward pass; 0 = one per core", parse: integer(0, 1024) },
  { key: "maxBatchTokens", flag: "max-batch-tokens", env: "FUSION_MAX_BATCH_TOKENS", default: 4096, help: "token budget of one forward pass: rows × longest input, padding included (mixed scheduling packs several inputs to a row)", parse: integer(1) },
  { key: "maxBatchSize", flag: "max-batch-size", env: "FUSION_MAX_BATCH_SIZE", default: 32, help: "most inputs in one forward pass", parse: integer(1) },
  {
    key: "maxWaitMs",
    flag: "max-wait-ms",
    env: "FUSION_MAX_WAIT_MS",
    default: 0,
    help: "longest an input waits for company when the engine is idle; 0 = a pass starts as soon as the engine is free, with whatever queued meanwhile",
    parse: integer(0, 60_000),
  },
  {
    key: "routeSlots",
    flag: "route-slots",
    env: "FUSION_ROUTE_SLOTS",
    default: 8,
    help: "most routes with a resident layout one forward pass serves (fixed when the engine starts)",
    parse: integer(1, 64),
  },
  {
    key: "directRouteSlots",
    flag: "direct-route-slots",
    env: "FUSION_DIRECT_ROUTE_SLOTS",
    default: 8,
    help: "most routes without a resident layout one forward pass serves, from their modules unfolded (fixed when the engine starts)",
    parse: integer(1, 64),
  },
  {
    key: "maxResidentRoutes",
    flag: "max-resident-routes",
    env: "FUSION_MAX_RESIDENT_ROUTES",
    default: 32,
    help: "most route layouts held in the engine at once; layouts are built in the background for routes traffic uses (until then passes serve a route unfolded) and the least used lately are evicted beyond this (pinned routes count, and stay)",
    parse: integer(1),
  },
  {
    key: "maxResidentMib",
    flag: "max-resident-mib",
    env: "FUSION_MAX_RESIDENT_MIB",
    default: 2048,
    help: "most MiB of route layouts held in the engine at once, the least used lately evicted beyond it",
    parse: integer(1),
  },
  {
    key: "pinRoutes",
    flag: "pin-routes",
    env: "FUSION_PIN_ROUTES",
    default: [], shown: "none",
    help: "comma-separated routes laid out as soon as they are served and never evicted",
    parse: (raw) => raw.split(",").map((name) => name.trim()).filter((name) => name.length > 0),
  },
  {
    key: "scheduling",
    flag: "scheduling",
    env: "FUSION_SCHEDULING",
    default: "mixed",
    help: "how passes are filled: mixed (arrival order, any route, inputs packed several to a row) or route-fifo (one route per pass, arrival order, one input per row)",
    parse: oneOf(SCHEDULING_POLICIES),
  },
  { key: "maxQueue", flag: "max-queue", env: "FUSION_MAX_QUEUE", default: 1024, help: "inputs waiting across all routes; beyond it requests get 429", parse: integer(1) },
  { key: "requestTimeoutMs", flag: "request-timeout-ms", env: "FUSION_REQUEST_TIMEOUT_MS", default: 30_000, help: "a prediction not answered in this time gets 503", parse: integer(1) },
  { key: "maxInputs", flag: "max-inputs", env: "FUSION_MAX_INPUTS", default: 64, help: "most texts in one request", parse: integer(1) },
  { key: "maxInputChars", flag: "max-input-chars", env: "FUSION_MAX_INPUT_CHARS", default: 10_000, help: "longest text accepted, in characters (Unicode code points)", parse: integer(1) },
  { key: "maxBodyBytes", flag: "max-body-bytes", env: "FUSION_MAX_BODY_BYTES", default: 1_048_576, help: "largest request body; beyond it 413", parse: integer(1) },
  { key: "maxSeqLen", flag: "max-seq-len", env: "FUSION_MAX_SEQ_LEN", default: undefined, shown: "128 (or the backbone's max positions, if smaller)", help: "tokens per input, special tokens included; longer texts are truncated", parse: integer(2) },
  { key: "shutdownTimeoutMs", flag: "shutdown-timeout-ms", env: "FUSION_SHUTDOWN_TIMEOUT_MS", default: 30_000, help: "on shutdown, once the drain is over: longest wait for in-flight requests before exiting anyway", parse: integer(1) },
  {
    key: "drainSeconds",
    flag: "drain-seconds",
    env: "FUSION_DRAIN_SECONDS",
    default: 5,
    help: "on SIGTERM, seconds during which /ready answers 503 while new connections are still accepted and served, so load balancers stop sending first; 0 = none",
    parse: integer(0, 3600),
  },
  {
    key: "adminToken",
    flag: "admin-token",
    env: "ADMIN_TOKEN",
    default: undefined, shown: "unset: no admin API",
    help: "bearer token of /v1/admin (at least 16 characters); prefer the variable, flags show in ps",
    parse: secret,
  },
  { key: "maxUploadBytes", flag: "max-upload-bytes", env: "FUSION_MAX_UPLOAD_BYTES", default: 64 * 2 ** 20, help: "largest file of an admin upload; beyond it 413", parse: integer(1) },
  {
    key: "moduleReadTimeoutMs",
    flag: "module-read-timeout-ms",
    env: "FUSION_MODULE_READ_TIMEOUT_MS",
    default: READ_BUDGET_MS,
    help: "longest a module's files may take to read and validate (in a thread of their own); beyond it the change is refused with 422 too_costly",
    parse: integer(100),
  },
  {
    key: "keepVersions",
    flag: "keep-versions",
    env: "FUSION_KEEP_VERSIONS",
    default: KEEP_VERSIONS,
    help: "version folders kept per module after a change, the live one and the rollback target included",
    parse: integer(2),
  },
  { key: "headersTimeoutMs", flag: "headers-timeout-ms", env: "FUSION_HEADERS_TIMEOUT_MS", default: 10_000, help: "longest time to receive a request's headers; then 408 and the connection is closed", parse: integer(100) },
  {
    key: "receiveTimeoutMs",
    flag: "receive-timeout-ms",
    env: "FUSION_RECEIVE_TIMEOUT_MS",
    default: 60_000,
    help: "longest time to receive a whole request, headers and body (uploads included); then 408 and the connection is closed",
    parse: integer(100),
  },
  {
    key: "keepAliveTimeoutMs",
    flag: "keep-alive-timeout-ms",
    env: "FUSION_KEEP_ALIVE_TIMEOUT_MS",
    // Longer than the 60 s idle timeout of common load balancers, so they never send on a socket the server is closing.
    default: 72_000,
    help: "an idle keep-alive connection is closed after this time",
    parse: integer(100),
  },
  { key: "maxConnections", flag: "max-connections", env: "FUSION_MAX_CONNECTIONS", default: 1024, help: "open connections in all; beyond it new ones are closed at once", parse: integer(1) },
  {
    key: "maxConnectionsPerClient",
    flag: "max-connections-per-client",
    env: "FUSION_MAX_CONNECTIONS_PER_CLIENT",
    default: 256,
    help: "open connections from one client address; beyond it new ones are closed at once; 0 = no limit (behind a proxy)",
    parse: integer(0),
  },
  {
    key: "apiKey",
    flag: "api-key",
    env: "FUSION_API_KEY",
    default: undefined, shown: "unset: predictions need no key",
    help: "bearer token the prediction API (/v1 but /v1/admin, /info) requires (at least 16 characters); the probes and /metrics stay open; prefer the variable, flags show in ps",
    parse: secret,
  },
  {
    key: "apiKeyMetrics",
    flag: "api-key-metrics",
    env: "FUSION_API_KEY_METRICS",
    default: false,
    help: "true: /metrics needs the API key too (Prometheus then sends it as its bearer token)",
    parse: (raw) => oneOf(["true", "false"] as const)(raw) === "true",
  },
  { key: "commit", flag: "commit", env: "FUSION_COMMIT", default: undefined, shown: "unset (the image sets it at build)", help: "source commit of this build, shown by /info and fusion_build_info; empty: unknown", parse: (raw) => raw.trim() || undefined },
  {
    key: "accessLog",
    flag: "access-log",
    env: "FUSION_ACCESS_LOG",
    default: "requests",
    help: "request log lines: requests (every request but the probes and /metrics scrapes), all, or off",
    parse: oneOf(ACCESS_LOGS),
  },
  { key: "logLevel", flag: "log-level", env: "FUSION_LOG_LEVEL", default: "info", help: `pino log level: ${LOG_LEVELS.join(", ")}`, parse: oneOf(LOG_LEVELS) },
];

/** How --help and the README show an option's default. */
export function shownDefault(option: AnyOption): string {
  return option.shown ?? String(option.default);
}

/** Every setting's default, as OPTIONS gives it. */
export const DEFAULT_CONFIG: ServerConfig = Object.fromEntries(OPTIONS.map((o) => [o.key, o.default])) as unknown as ServerConfig;

function s3Url(raw: string): string {
  if (!/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(raw)) throw new Error("must be s3://bucket or s3://bucket/prefix, with a valid bucket name");
  return raw.replace(/\/+$/, "");
}

/** Thrown for --help and --version: the caller prints the text and exits 0. */
export class HelpRequested extends Error {
  override readonly name = "HelpRequested";
}

/**
 * Builds the configuration: a flag wins over its environment variable, which wins over the
 * default. Any unknown flag, malformed value or inconsistent pair is a ConfigError.
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ServerConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        help: { type: "boolean", short: "h" },
        version: { type: "boolean" },
        ...Object.fromEntries(OPTIONS.map((o) => [o.flag, { type: "string" as const }])),
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n\n${usage()}`);
  }
  if (values.help) throw new HelpRequested(usage());
  if (values.version) {
    const commit = typeof values.commit === "string" ? values.commit : env.FUSION_COMMIT;
    throw new HelpRequested(`${PACKAGE.name} ${PACKAGE.version}${commit ? ` (commit ${commit})` : ""}`);
  }

  const config: Record<string, unknown> = { ...DEFAULT_CONFIG };
  for (const option of OPTIONS) {
    const fromFlag = values[option.flag];
    const raw = typeof fromFlag === "string" ? fromFlag : env[option.env];
    if (raw === undefined) continue;
    const source = typeof fromFlag === "string" ? `--${option.flag}` : `${option.env} (--${option.flag})`;
    try {
      config[option.key] = option.parse(raw);
    } catch (err) {
      const shown = SECRETS.has(option.key) ? "<hidden>" : raw;
      throw new ConfigError(`${source} ${(err as Error).message}, got '${shown}'`);
    }
  }
  const result = config as unknown as ServerConfig;
  checkConsistency(result);
  return result;
}

function checkConsistency(c: ServerConfig): void {
  if (c.maxQueue < c.maxInputs) {
    throw new ConfigError(`--max-queue (${c.maxQueue}) must be at least --max-inputs (${c.maxInputs}), or a full request could never be queued`);
  }
  if (c.headersTimeoutMs > c.receiveTimeoutMs) {
    throw new ConfigError(`--headers-timeout-ms (${c.headersTimeoutMs}) must be at most --receive-timeout-ms (${c.receiveTimeoutMs}): the headers are part of the request`);
  }
  if (c.maxSeqLen !== undefined) checkBudget(c.maxSeqLen, c.maxBatchTokens);
  if (c.precision === "int8" && c.device !== "cpu") {
    throw new ConfigError("--precision int8 runs on the CPU only (ONNX Runtime's dynamic quantization kernels); use --device cpu or --precision float32");
  }
}

function checkBudget(seqLen: number, maxBatchTokens: number): void {
  if (maxBatchTokens < seqLen) {
    throw new ConfigError(`--max-batch-tokens (${maxBatchTokens}) must be at least the sequence length (${seqLen}), or a long input could never run`);
  }
}

/** The sequence length actually served, given the backbone's position limit. */
export function effectiveMaxSeqLen(config: ServerConfig, maxPositions: number): number {
  if (config.maxSeqLen !== undefined && config.maxSeqLen > maxPositions) {
    throw new ConfigError(`--max-seq-len ${config.maxSeqLen} exceeds the backbone's max_position_embeddings (${maxPositions})`);
  }
  const seqLen = config.maxSeqLen ?? Math.min(DEFAULT_MAX_SEQ_LEN, maxPositions);
  checkBudget(seqLen, config.maxBatchTokens);
  return seqLen;
}

/** What loading the model library needs of the configuration. */
export function runtimeOptions(config: ServerConfig): RuntimeOptions {
  return {
    library: config.library,
    objectStore: {
      cacheDir: config.libraryCache,
      endpoint: config.s3Endpoint,
      pathStyle: config.s3PathStyle === "auto" ? undefined : config.s3PathStyle === "true",
      timeoutMs: config.s3TimeoutMs,
      pollMs: config.libraryPollMs,
    },
    device: config.device,
    precision: config.precision,
    int8Weights: config.int8Weights,
    threads: config.threads,
    routeSlots: config.routeSlots,
    directRouteSlots: config.directRouteSlots,
    maxBatchSize: config.maxBatchSize,
    residency: { maxRoutes: config.maxResidentRoutes, maxBytes: config.maxResidentMib * 2 ** 20, pinned: new Set(config.pinRoutes) },
    maxSeqLen: (maxPositions) => effectiveMaxSeqLen(config, maxPositions),
    moduleReadTimeoutMs: config.moduleReadTimeoutMs,
  };
}

/** What the scheduler needs of the configuration. */
export function schedulerOptions(config: ServerConfig): SchedulerOptions {
  const { maxBatchTokens, maxBatchSize, maxWaitMs, maxQueue, requestTimeoutMs, scheduling } = config;
  return { maxBatchTokens, maxBatchSize, maxWaitMs, maxQueue, requestTimeoutMs, scheduling };
}

export function usage(): string {
  // The text starts two spaces after the longest flag, so no flag runs into its text.
  const width = Math.max(...OPTIONS.map((o) => `  --${o.flag} <value>`.length)) + 2;
  const lines = OPTIONS.map((o) => `  --${o.flag} <value>`.padEnd(width) + `${o.help}\n${" ".repeat(width)}env ${o.env}, default ${shownDefault(o)}`);
  return [
    "Usage: fusion-serve serve [options]   (the same server: node dist/main.js [options])",
    "",
    "Options (a flag wins over its environment variable):",
    ...lines,
    "  --version".padEnd(width) + "print the version",
    "  -h, --help".padEnd(width) + "print this help",
  ].join("\n");
}
