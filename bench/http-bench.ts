import autocannon from "autocannon";
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { DEFAULT_CONFIG, effectiveMaxSeqLen } from "../src/config.js";
import { loadBackbone } from "../src/engine/backbone.js";
import { FusionEngine } from "../src/engine/engine.js";
import { routeFeeds } from "../src/engine/layout.js";
import { padBatch } from "../src/engine/packing.js";
import { readout } from "../src/engine/readout.js";
import { TextTokenizer } from "../src/engine/tokenizer.js";
import { AdapterLibrary } from "../src/library/library.js";
import { readManifest } from "../src/library/manifest.js";
import type { FusionRoute } from "../src/library/route.js";
import { loadTweets } from "./inputs.js";
import { median, type Guard } from "./stats.js";

export interface HttpStep {
  readonly concurrency: number;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly batches?: number;
  readonly meanBatch?: number;
  readonly histogram?: string;
  /** Mean time of the server's forward passes in this step (fusion_inference_seconds), ms. */
  readonly passMs?: number;
  /** CPU (% of a core) used by processes outside the bench and its server during the step. */
  readonly othersPercent: number;
}

export interface HttpResults {
  readonly description: string;
  readonly library: string;
  readonly route: string;
  readonly steps: readonly HttpStep[];
  readonly engineOnly: EngineOnly;
  /** Best throughput among the steps with concurrency ≥ 2 × the server's max batch (a full batch waits while one runs). */
  readonly saturationRps: number;
  readonly saturationRatio: number;
  /** Which steps count as saturation. */
  readonly saturationSteps: readonly number[];
}

export interface HttpOptions {
  readonly root: string;
  readonly quick: boolean;
  readonly threads: number;
  /** The bench library, used when the default library (models/library.json) is absent. */
  readonly weightsDir: string;
  /** Where the server's log goes. */
  readonly serverLog: string;
  readonly guard: Guard;
  /** Server entry point relative to the repository (default src/main.ts; experiments in bench/experiments/). */
  readonly serverEntry?: string;
  readonly log: (line: string) => void;
}

const CONCURRENCY = [1, 4, 16, 64, 128];

/** Picks the route to load: a fusion of 5 adapters if there is one, else the largest fusion. */
function pickRoute(library: AdapterLibrary): FusionRoute {
  const routes = [...library.state.routes.values()];
  const fusions = routes.filter((r) => r.kind === "fusion").sort((a, b) => b.adapters.length - a.adapters.length);
  const route = fusions.find((r) => r.adapters.length === 5) ?? fusions[0] ?? routes[0];
  if (!route) throw new Error(`the library at ${library.location} serves no route`);
  return route;
}

/** Splits tokenized inputs, in order, into the batches the server's batcher would form at its limits. */
export function serverBatches(seqs: readonly (readonly number[])[], maxBatchSize: number, maxBatchTokens: number): number[][][] {
  const batches: number[][][] = [];
  let current: number[][] = [];
  let width = 0;
  for (const s of seqs) {
    const w = Math.max(width, s.length);
    if (current.length > 0 && (current.length >= maxBatchSize || (current.length + 1) * w > maxBatchTokens)) {
      batches.push(current);
      current = [];
      width = 0;
    }
    current.push([...s]);
    width = Math.max(width, s.length);
  }
  if (current.length) batches.push(current);
  return batches;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

interface BatchHistogram {
  readonly buckets: Map<string, number>; // le -> cumulative count
  readonly sum: number;
  readonly count: number;
  /** fusion_inference_seconds sum, for the mean pass time. */
  readonly inferenceSum: number;
}

async function readBatchHistogram(base: string, route: string): Promise<BatchHistogram> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const buckets = new Map<string, number>();
  let sum = 0;
  let count = 0;
  let inferenceSum = 0;
  for (const line of text.split("\n")) {
    const inf = /^fusion_inference_seconds_sum\{([^}]*)\}\s+(\S+)/.exec(line);
    if (inf && inf[1].includes(`fusion="${route}"`)) inferenceSum = Number(inf[2]);
    const m = /^fusion_batch_size_(bucket|sum|count)\{([^}]*)\}\s+(\S+)/.exec(line);
    if (!m || !m[2].includes(`fusion="${route}"`)) continue;
    const value = Number(m[3]);
    if (m[1] === "sum") sum = value;
    else if (m[1] === "count") count = value;
    else buckets.set(/le="([^"]+)"/.exec(m[2])![1], value);
  }
  return { buckets, sum, count, inferenceSum };
}

/** Per-bucket counts of the batches formed between two scrapes, e.g. "17–32: 40, 9–16: 3". */
function histogramDiff(before: BatchHistogram, after: BatchHistogram): string {
  const parts: string[] = [];
  let prevLe = 0;
  let prevCum = 0;
  for (const [le, cum] of after.buckets) {
    const delta = cum - (before.buckets.get(le) ?? 0);
    const n = delta - prevCum;
    const lo = prevLe + 1;
    const label = le === "+Inf" ? `>${prevLe}` : lo === Number(le) ? `${le}` : `${lo}–${le}`;
    if (n > 0) parts.push(`${label}: ${n}`);
    prevCum = delta;
    if (le !== "+Inf") prevLe = Number(le);
  }
  return parts.join(", ") || "none";
}

/** Waits (up to 30 s) until the server has no queued input and no request in flight but the scrape itself. */
async function drained(base: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const text = await (await fetch(`${base}/metrics`)).text();
    const gauge = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1] ?? 0);
    if (gauge("fusion_queue_depth") === 0 && gauge("http_requests_in_flight") <= 1) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startServer(opts: HttpOptions, library: string, port: number): Promise<ChildProcess> {
  const logFd = openSync(opts.serverLog, "w");
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(opts.root, opts.serverEntry ?? join("src", "main.ts")), "--library", library, "--port", String(port), "--threads", String(opts.threads)],
    { cwd: opts.root, stdio: ["ignore", logFd, logFd] },
  );
  closeSync(logFd);
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    try {
      if ((await fetch(`${base}/ready`)).status === 200) return child;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await stopServer(child);
  const tail = readFileSync(opts.serverLog, "utf8").trim().split("\n").slice(-5).join("\n");
  throw new Error(`the server did not become ready (exit ${child.exitCode}); its log ends:\n${tail}`);
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

/** Sorts each window of `window` consecutive inputs by length: what a length-aware batcher could do with that many queued. */
export function lengthSorted(seqs: readonly (readonly number[])[], window: number): (readonly number[])[] {
  const out: (readonly number[])[] = [];
  for (let i = 0; i < seqs.length; i += window) out.push(...[...seqs.slice(i, i + window)].sort((a, b) => a.length - b.length));
  return out;
}

export interface EngineOnly {
  readonly seqPerSec: number;
  readonly medianMs: number;
  readonly description: string;
  readonly othersPercent: number;
  /** The same tweets with each window of 128 sorted by length before batching: what length-aware batching could reach. */
  readonly sorted: { readonly seqPerSec: number; readonly meanWidth: number; readonly othersPercent: number };
}

/**
 * The engine alone on the same tweets: tokenized with the backbone's tokenizer, split in arrival
 * order into the batches the server forms at its maximum (default batch limits), each run through
 * the engine with the route's weights and its head applied, as the batcher does, minus HTTP.
 */
async function engineOnly(libraryDir: string, routeName: string, tweets: readonly string[], opts: HttpOptions): Promise<EngineOnly> {
  const manifest = await readManifest(libraryDir);
  const backboneDir = join(libraryDir, manifest.backbone);
  const backbone = await loadBackbone(backboneDir);
  const library = await AdapterLibrary.open(libraryDir, backbone.config);
  const route = library.route(routeName);
  const tokenizer = await TextTokenizer.load(backboneDir, effectiveMaxSeqLen(DEFAULT_CONFIG, backbone.config.maxPositions));
  const seqs = tweets.map((t) => tokenizer.encode(t).ids);
  const batchesOf = (order: readonly (readonly number[])[]) =>
    serverBatches(order, DEFAULT_CONFIG.maxBatchSize, DEFAULT_CONFIG.maxBatchTokens).map((b) => padBatch(b));
  const engine = await FusionEngine.create(backbone, { device: "cpu", threads: opts.threads, variant: "fused" });
  const d = backbone.config.hiddenSize;
  type Batch = ReturnType<typeof padBatch>;
  const feeds = await routeFeeds(backbone.config, route);
  const pass = async (batch: Batch) => readout(route.head, await engine.run(batch, feeds), batch, d, false);
  const timeAll = async (what: string, batches: Batch[]) => {
    for (const b of batches.slice(0, 3)) await pass(b);
    const { value, othersPercent } = await opts.guard(what, async () => {
      const times: number[] = [];
      const t0 = performance.now();
      for (const b of batches) {
        const t1 = performance.now();
        await pass(b);
        times.push(performance.now() - t1);
      }
      return { times, seconds: (performance.now() - t0) / 1000 };
    });
    const meanWidth = batches.reduce((a, b) => a + b.seqLen, 0) / batches.length;
    return { ...value, othersPercent, meanWidth, count: batches.length };
  };
  const arrival = await timeAll("engine only", batchesOf(seqs));
  const sorted = await timeAll("engine only, length-sorted", batchesOf(lengthSorted(seqs, 128)));
  await engine.close();
  const meanLen = seqs.reduce((a, s) => a + s.length, 0) / seqs.length;
  return {
    seqPerSec: seqs.length / arrival.seconds,
    medianMs: median(arrival.times),
    othersPercent: arrival.othersPercent,
    description:
      `${seqs.length} tweets (mean ${meanLen.toFixed(1)} tokens) in ${arrival.count} batches of up to ${DEFAULT_CONFIG.maxBatchSize} inputs / ` +
      `${DEFAULT_CONFIG.maxBatchTokens} padded tokens, mean padded width ${arrival.meanWidth.toFixed(1)}; engine.run + head readout timed`,
    sorted: { seqPerSec: seqs.length / sorted.seconds, meanWidth: sorted.meanWidth, othersPercent: sorted.othersPercent },
  };
}

export async function runHttpBench(opts: HttpOptions): Promise<HttpResults | { skipped: string }> {
  if (!existsSync(join(opts.root, "src", "main.ts")) || !existsSync(join(opts.root, "src", "server", "app.ts"))) {
    return { skipped: "the HTTP server (src/main.ts, src/server/app.ts) does not exist yet" };
  }
  const tweetDir = process.env.TWEETEVAL_DIR ?? join(opts.root, "..", "shared", "data", "tweeteval");
  const tweets = loadTweets(tweetDir);
  if (tweets.length === 0) return { skipped: `no tweets found under ${tweetDir} (set TWEETEVAL_DIR)` };

  const defaultLibrary = join(opts.root, "models");
  const libraryDir = existsSync(join(defaultLibrary, "library.json")) ? defaultLibrary : opts.weightsDir;
  const backbone = await loadBackbone(join(libraryDir, (await readManifest(libraryDir)).backbone));
  const route = pickRoute(await AdapterLibrary.open(libraryDir, backbone.config));
  opts.log(`HTTP level: library ${libraryDir}, route '${route.name}' (${route.adapters.length} adapters), ${tweets.length} tweets`);

  const engineTweets = tweets.slice(0, opts.quick ? 256 : 2048);
  const eo = await engineOnly(libraryDir, route.name, engineTweets, opts);
  opts.log(`engine only, same tweets: ${eo.seqPerSec.toFixed(1)} seq/s (${eo.description})`);
  opts.log(`engine only, same tweets length-sorted per 128: ${eo.sorted.seqPerSec.toFixed(1)} seq/s (mean padded width ${eo.sorted.meanWidth.toFixed(1)})`);

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = await startServer(opts, libraryDir, port);
  const steps: HttpStep[] = [];
  try {
    let next = 0;
    const body = () => JSON.stringify({ inputs: tweets[next++ % tweets.length] });
    const load = (connections: number, duration: number) =>
      autocannon({
        url: base,
        connections,
        duration,
        timeout: 60,
        requests: [
          {
            method: "POST",
            path: `/v1/predict/${encodeURIComponent(route.name)}`,
            headers: { "content-type": "application/json" },
            setupRequest: (req) => ({ ...req, body: body() }),
          },
        ],
      });
    await load(16, opts.quick ? 1 : 3); // warm-up
    for (const c of opts.quick ? [1, 16, 64] : CONCURRENCY) {
      const { value, othersPercent } = await opts.guard(`HTTP c=${c}`, async () => {
        next = 0; // every step sends the tweets in the same order as engine-only batches them
        const before = await readBatchHistogram(base, route.name);
        const r = await load(c, opts.quick ? 2 : 10);
        await drained(base); // requests autocannon abandoned at the end still finish their batches
        return { before, r, after: await readBatchHistogram(base, route.name) };
      });
      const { before, r, after } = value;
      const batches = after.count - before.count;
      const step: HttpStep = {
        concurrency: c,
        rps: r["2xx"] / r.duration,
        p50: r.latency.p50,
        p99: r.latency.p99,
        errors: r.errors + r.timeouts + r.non2xx,
        batches,
        meanBatch: batches > 0 ? (after.sum - before.sum) / batches : Number.NaN,
        histogram: histogramDiff(before, after),
        passMs: batches > 0 ? ((after.inferenceSum - before.inferenceSum) * 1000) / batches : Number.NaN,
        othersPercent,
      };
      steps.push(step);
      opts.log(
        `HTTP c=${c}: ${step.rps.toFixed(1)} req/s, p50 ${step.p50.toFixed(1)} ms, p99 ${step.p99.toFixed(1)} ms, ` +
          `${step.errors} errors, mean batch ${step.meanBatch?.toFixed(1)} (${step.histogram}), mean pass ${step.passMs?.toFixed(1)} ms`,
      );
    }
  } finally {
    await stopServer(server);
  }
  const maxConcurrency = Math.max(...steps.map((s) => s.concurrency));
  const saturated = steps.filter((s) => s.concurrency >= Math.min(2 * DEFAULT_CONFIG.maxBatchSize, maxConcurrency));
  const saturationRps = Math.max(...saturated.map((s) => s.rps));
  return {
    description:
      `autocannon against \`node ${opts.serverEntry ?? "src/main.ts"} --library ${libraryDir.startsWith(opts.root) ? libraryDir.slice(opts.root.length + 1) : libraryDir} --threads ${opts.threads}\` ` +
      `(every other setting at its default: max batch ${DEFAULT_CONFIG.maxBatchSize} inputs / ${DEFAULT_CONFIG.maxBatchTokens} tokens, max wait ${DEFAULT_CONFIG.maxWaitMs} ms, log level ${DEFAULT_CONFIG.logLevel}), ` +
      `route '${route.name}' (${route.adapters.length} adapters), one tweet per request from ${tweets.length} TweetEval validation tweets, in a fixed order; ` +
      `${opts.quick ? 2 : 10} s per step on a keep-alive connection per client. Batch sizes from the server's fusion_batch_size histogram, scraped before and after each step.`,
    library: libraryDir,
    route: route.name,
    steps,
    engineOnly: eo,
    saturationRps,
    saturationRatio: saturationRps / eo.seqPerSec,
    saturationSteps: saturated.map((s) => s.concurrency),
  };
}
