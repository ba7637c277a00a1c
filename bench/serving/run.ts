import { spawn, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Agent } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { DEFAULT_CONFIG, effectiveMaxSeqLen } from "../../src/config.js";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FusionEngine } from "../../src/engine/engine.js";
import { routeFeeds } from "../../src/engine/layout.js";
import { padBatch, readout } from "../../src/engine/readout.js";
import { TextTokenizer } from "../../src/engine/tokenizer.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { loadTweets } from "../inputs.js";
import { machineLine } from "../machine.js";
import { median, quantile } from "../stats.js";
import { latencies, post, runLoad, type Answer } from "./load.js";

/**
 * The serving core under load (docs/design.md, "Serving"): health probes while saturated, swaps
 * under load, passes that mix routes, and tweets at saturation against single-route FIFO passes,
 * all against the default library in one run, so every ratio compares figures of the same
 * machine and minutes. `npm run bench:serving` (README: Benchmarks).
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const { values: args } = parseArgs({
  options: { threads: { type: "string", default: "2" }, quick: { type: "boolean" }, publish: { type: "boolean" }, name: { type: "string" } },
});
const threads = Number(args.threads);
const scale = args.quick ? 0.25 : 1;
const seconds = (s: number) => Math.max(2, Math.round(s * scale));
const TOKEN = "serving-bench-admin-token";
const ROUTES = ["hate-fusion", "irony-fusion", "sentiment", "emotion", "offensive", "irony", "hate"];
const lines: string[] = [];
const log = (line: string) => {
  lines.push(line);
  console.log(line);
};

// ---- inputs and a writable copy of the default library ----
const tweetDir = resolve(ROOT, process.env.TWEETEVAL_DIR ?? join("..", "shared", "data", "tweeteval"));
let tweets = loadTweets(tweetDir, 4000);
let tweetSource = `TweetEval validation tweets (${tweets.length}, read at run time)`;
if (tweets.length === 0) {
  tweets = JSON.parse(readFileSync(join(ROOT, "test", "fixtures", "library-reference", "samples.json"), "utf8")).texts;
  tweetSource = `the committed sample texts (${tweets.length}); TweetEval not found at ${tweetDir}`;
}
const models = join(ROOT, "models");
const library = mkdtempSync(join(tmpdir(), "serving-bench-"));
process.on("exit", () => rmSync(library, { recursive: true, force: true }));
cpSync(models, library, { recursive: true, filter: (src) => !src.startsWith(join(models, "backbones")) });
const manifest = JSON.parse(readFileSync(join(models, "library.json"), "utf8"));
const backboneDir = resolve(models, manifest.backbone);
writeFileSync(join(library, "library.json"), JSON.stringify({ ...manifest, backbone: backboneDir }));
// Two staged versions of `hate` that differ from each other: the swaps alternate between them.
const staged = ["hate-a", "hate-b"].map((name, i) => {
  const dir = join(library, "incoming", name);
  cpSync(join(models, "adapters", "hate", "1"), dir, { recursive: true });
  const file = join(dir, "adapter.safetensors");
  const bytes = readFileSync(file);
  const start = 8 + Number(bytes.readBigUInt64LE(0));
  for (let o = start; o + 4 <= bytes.length; o += 4) bytes.writeFloatLE(bytes.readFloatLE(o) * (1.01 + 0.01 * i), o);
  writeFileSync(file, bytes);
  return `incoming/${name}`;
});

// ---- the server as a child process ----
interface Server {
  readonly base: string;
  readonly child: ChildProcess;
}
let nextPort = 18000 + Math.floor(Math.random() * 2000);
async function startServer(flags: string[]): Promise<Server> {
  const port = nextPort++;
  const logFile = join(ROOT, "bench", "results", "serving-server.log");
  mkdirSync(dirname(logFile), { recursive: true });
  const fd = openSync(logFile, "w");
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(ROOT, "src", "main.ts"), "--library", library, "--port", String(port), "--threads", String(threads), "--log-level", "warn", ...flags],
    { cwd: ROOT, stdio: ["ignore", fd, fd], env: { ...process.env, ADMIN_TOKEN: TOKEN } },
  );
  closeSync(fd);
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      if ((await fetch(`${base}/ready`)).status === 200) return { base, child };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  child.kill("SIGKILL");
  throw new Error(`the server did not become ready; see ${logFile}`);
}
async function stopServer(server: Server): Promise<void> {
  if (server.child.exitCode !== null) return;
  const exited = new Promise((r) => server.child.once("exit", r));
  server.child.kill("SIGTERM");
  await exited;
}

// ---- what the server's /metrics says ----
async function scrape(base: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(fusion_pass_rows_(?:sum|count)|fusion_pass_routes_(?:sum|count)|fusion_pass_tokens_total\{kind="(?:real|computed)"\}) (\S+)$/.exec(line);
    if (m) values.set(m[1], Number(m[2]));
  }
  return values;
}
interface PassFigures {
  readonly passes: number;
  readonly meanRows: number;
  readonly meanRoutes: number;
  readonly realTokens: number;
  readonly padding: number;
}
function passFigures(before: Map<string, number>, after: Map<string, number>): PassFigures {
  const d = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
  const passes = d("fusion_pass_rows_count");
  const real = d('fusion_pass_tokens_total{kind="real"}');
  const computed = d('fusion_pass_tokens_total{kind="computed"}');
  return { passes, meanRows: d("fusion_pass_rows_sum") / passes, meanRoutes: d("fusion_pass_routes_sum") / passes, realTokens: real, padding: 1 - real / computed };
}

// ---- the prober, in its own process ----
function startProber(base: string): { stop: () => Promise<{ fresh: number[]; kept: number[]; failures: number }> } {
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "bench", "serving", "prober.ts"), base, "100"], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  return {
    stop: async () => {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
      return JSON.parse(out.trim());
    },
  };
}

interface Step {
  readonly answers: Answer[];
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly passes: PassFigures;
  readonly usefulTokensPerSecond: number;
}
let tweetCursor = 0;
const nextTweet = () => tweets[tweetCursor++ % tweets.length];
async function step(base: string, clients: number, secs: number, routeOf: (client: number, i: number) => string): Promise<Step> {
  // A short warm-up fills the queues before anything is counted.
  await runLoad({ base, clients, seconds: 1, next: (c, i) => ({ route: routeOf(c, i), inputs: [nextTweet()] }) });
  const before = await scrape(base);
  const answers = await runLoad({ base, clients, seconds: secs, next: (c, i) => ({ route: routeOf(c, i), inputs: [nextTweet()] }) });
  const passes = passFigures(before, await scrape(base));
  const ms = latencies(answers);
  return {
    answers,
    rps: answers.length / secs,
    p50: median(ms),
    p99: quantile(ms, 0.99),
    errors: answers.filter((a) => a.status !== 200).length,
    passes,
    usefulTokensPerSecond: passes.realTokens / secs,
  };
}
const f = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "n/a");
const verdict = (ok: boolean) => (ok ? "holds" : "**NOT MET**");
const results: string[] = [];
const target = (name: string, figures: string, ok: boolean) => {
  results.push(`| ${name} | ${figures} | ${verdict(ok)} |`);
  log(`${name}: ${figures} -> ${ok ? "holds" : "NOT MET"}`);
};

log(`# Serving core benchmark${args.name ? ` (${args.name})` : ""}`);
log(`Machine: ${machineLine()}; server --threads ${threads}; inputs: ${tweetSource}; ${args.quick ? "quick (short steps)" : "full"} run, ${new Date().toISOString().slice(0, 10)}.`);
const started = performance.now();

// ---- 1. /health while saturated, from a separate process ----
const mixed = await startServer([]);
let prober = startProber(mixed.base);
await new Promise((r) => setTimeout(r, seconds(8) * 1000));
const idle = await prober.stop();
prober = startProber(mixed.base);
const saturated64 = await step(mixed.base, 64, seconds(20), () => "hate-fusion");
const busy = await prober.stop();
const p99 = (xs: number[]) => quantile(xs, 0.99);
log(`idle /health p99: new connection ${f(p99(idle.fresh))} ms, kept-alive ${f(p99(idle.kept))} ms (${idle.fresh.length} probes each)`);
log(`saturated (64 clients on hate-fusion, ${f(saturated64.rps)} req/s): /health p99 new connection ${f(p99(busy.fresh))} ms (max ${f(Math.max(...busy.fresh))}), kept-alive ${f(p99(busy.kept))} ms (max ${f(Math.max(...busy.kept))}); ${busy.failures} failed probes`);
for (const [kind, i, s] of [["new connection", idle.fresh, busy.fresh], ["kept-alive", idle.kept, busy.kept]] as const) {
  const ok = p99(s) <= 50 && p99(s) <= 10 * Math.max(p99(i), 1) && busy.failures === 0;
  target(`1. /health p99 saturated, ${kind}`, `${f(p99(s))} ms; idle ${f(p99(i))} ms; ratio ${f(p99(s) / p99(i))}× (≤ 50 ms and ≤ 10×)`, ok);
}

// ---- 4. tweets at saturation: this server at 8 and 64 clients (64 measured above) ----
const saturated8 = await step(mixed.base, 8, seconds(15), () => "hate-fusion");

// ---- 3. mixed traffic over all 7 routes against one route, same concurrency ----
const mixedSteps = new Map<string, Step>();
for (const clients of [7, 64]) {
  mixedSteps.set(`single ${clients}`, await step(mixed.base, clients, seconds(15), () => "hate-fusion"));
  mixedSteps.set(`mixed ${clients}`, await step(mixed.base, clients, seconds(15), (c, i) => ROUTES[(c + i) % ROUTES.length]));
}
for (const [name, s] of mixedSteps) {
  log(`${name}: ${f(s.rps)} req/s, p50 ${f(s.p50)} ms, p99 ${f(s.p99)} ms, ${f(s.passes.meanRows)} rows and ${f(s.passes.meanRoutes, 2)} routes per pass, padding ${f(100 * s.passes.padding)} %, ${s.errors} errors`);
}
for (const clients of [7, 64]) {
  const [single, mix] = [mixedSteps.get(`single ${clients}`)!, mixedSteps.get(`mixed ${clients}`)!];
  const rows = mix.passes.meanRows / single.passes.meanRows;
  target(`3. rows per pass, mixed / single, ${clients} clients`, `${f(mix.passes.meanRows)} / ${f(single.passes.meanRows)} = ${f(rows, 2)} (≥ 0.8)`, rows >= 0.8);
  if (clients === 64) target(`3. throughput mixed / single, 64 clients`, `${f(mix.rps)} / ${f(single.rps)} req/s = ${f(mix.rps / single.rps, 2)} (≥ 0.95)`, mix.rps / single.rps >= 0.95);
  if (clients === 7) target(`3. p50 mixed / single, 7 clients`, `${f(mix.p50)} / ${f(single.p50)} ms = ${f(mix.p50 / single.p50, 2)} (≤ 1.1)`, mix.p50 / single.p50 <= 1.1);
}

// ---- 2. steady load over three routes with a swap of `hate` every 3 s ----
const swapRoutes = ["hate-fusion", "irony-fusion", "hate"];
const agent = new Agent({ keepAlive: true });
const versionsNow = async () => {
  const body = await (await fetch(`${mixed.base}/v1/fusions`)).json();
  return new Map<string, string>(body.fusions.map((r: { name: string; version: string }) => [r.name, r.version]));
};
/** Each change: when it was requested and answered, and every route's version right after it. */
const timeline: { requested: number; answered: number; versions: Map<string, string> }[] = [{ requested: 0, answered: 0, versions: await versionsNow() }];
prober = startProber(mixed.base);
const calm = await runLoad({ base: mixed.base, clients: 8, seconds: seconds(20), next: (c, i) => ({ route: swapRoutes[(c + i) % 3], inputs: [nextTweet()] }) });
const swapStatuses: number[] = [];
let swapping = true;
const swapper = (async () => {
  for (let i = 0; swapping; i++) {
    const sentAt = performance.now();
    const answer = await post(mixed.base, "/v1/admin/adapters/hate", { path: staged[(i + 1) % 2] }, agent, { authorization: `Bearer ${TOKEN}` });
    swapStatuses.push(answer.status);
    timeline.push({ requested: sentAt, answered: performance.now(), versions: await versionsNow() });
    await new Promise((r) => setTimeout(r, Math.max(0, 3000 - (performance.now() - sentAt))));
  }
})();
const during = await runLoad({ base: mixed.base, clients: 8, seconds: seconds(60), next: (c, i) => ({ route: swapRoutes[(c + i) % 3], inputs: [nextTweet()] }) });
swapping = false;
await swapper;
const swapProbes = await prober.stop();
agent.destroy();
/** A version may answer from the moment its change was requested until the next change was answered. */
const liveDuring = (a: Answer) =>
  timeline.some(
    (change, k) => change.versions.get(a.route) === a.version && change.requested <= a.doneAt && a.sentAt <= (timeline[k + 1]?.answered ?? Infinity),
  );
const calmP99 = quantile(latencies(calm), 0.99);
const swapP99 = quantile(latencies(during), 0.99);
const nonOk = [...calm, ...during].filter((a) => a.status !== 200).length + swapStatuses.filter((s) => s !== 200).length;
const stale = during.filter((a) => a.status === 200 && !liveDuring(a)).length;
const healthMax = Math.max(...swapProbes.fresh, ...swapProbes.kept);
log(`swaps: ${swapStatuses.length} PUTs of hate (${swapStatuses.filter((s) => s === 200).length} answered 200); predict p99 ${f(calmP99)} ms swap-free (${calm.length} answers), ${f(swapP99)} ms during swaps (${during.length} answers); /health max ${f(healthMax)} ms`);
target("2. predict p99 during swaps / swap-free", `${f(swapP99)} / ${f(calmP99)} ms = ${f(swapP99 / calmP99, 2)} (≤ 1.5)`, swapP99 / calmP99 <= 1.5);
target("2. /health max during swaps", `${f(healthMax)} ms (≤ 100)`, healthMax <= 100 && swapProbes.failures === 0);
target("2. non-2xx answers (predict and swaps)", `${nonOk}`, nonOk === 0);
target("2. answers whose version was not live during the request", `${stale} of ${during.length}`, stale === 0);
await stopServer(mixed);

// ---- 4. the same tweets on single-route FIFO passes, as the server scheduled before ----
const fifo = await startServer(["--scheduling", "route-fifo", "--route-slots", "1"]);
const fifo64 = await step(fifo.base, 64, seconds(20), () => "hate-fusion");
await stopServer(fifo);

// ---- the engine alone on unpadded batches of the tweets' mean length ----
const backbone = await loadBackbone(backboneDir);
const tokenizer = await TextTokenizer.load(backboneDir, effectiveMaxSeqLen(DEFAULT_CONFIG, backbone.config.maxPositions));
const sample = tweets.slice(0, 2000);
const tokenizeStart = performance.now();
const meanLength = Math.round(sample.reduce((sum, t) => sum + tokenizer.encode(t).ids.length, 0) / sample.length);
const tokenizeMicros = ((performance.now() - tokenizeStart) * 1000) / sample.length;
const route = (await AdapterLibrary.open(library, backbone.config)).route("hate-fusion");
const engine = await FusionEngine.create(backbone, { device: "cpu", threads, variant: "fused" });
const feeds = routeFeeds(backbone.config, route);
const unpadded = padBatch(Array.from({ length: DEFAULT_CONFIG.maxBatchSize }, (_, b) => Array.from({ length: meanLength }, (_, t) => 1000 + ((b * 7919 + t * 104729) % 29000))));
const passTimes: number[] = [];
for (let i = 0; i < 3; i++) await engine.run(unpadded, feeds);
const engineEnd = performance.now() + seconds(10) * 1000;
while (performance.now() < engineEnd) {
  const t0 = performance.now();
  readout(route.head, await engine.run(unpadded, feeds), unpadded, backbone.config.hiddenSize, false);
  passTimes.push(performance.now() - t0);
}
await engine.close();
const engineTokensPerSecond = (unpadded.batch * meanLength) / (median(passTimes) / 1000);

log(`tweets, 64 clients: mixed scheduling ${f(saturated64.rps)} req/s (padding ${f(100 * saturated64.passes.padding)} %, ${f(saturated64.passes.meanRows)} rows per pass, ${f(saturated64.usefulTokensPerSecond, 0)} real tokens/s), route-fifo ${f(fifo64.rps)} req/s (padding ${f(100 * fifo64.passes.padding)} %, ${f(fifo64.passes.meanRows)} rows per pass); 8 clients ${f(saturated8.rps)} req/s`);
log(`tokenization on the main thread: ${f(tokenizeMicros)} µs per tweet (${sample.length} tweets)`);
log(`engine alone, ${unpadded.batch} × ${meanLength} tokens (the tweets' mean length), no padding: ${f(median(passTimes))} ms per pass = ${f(engineTokensPerSecond, 0)} tokens/s`);
target("4. requests/s, mixed / route-fifo, 64 clients", `${f(saturated64.rps)} / ${f(fifo64.rps)} = ${f(saturated64.rps / fifo64.rps, 2)} (≥ 1.5)`, saturated64.rps / fifo64.rps >= 1.5);
target("4. padding, 64 clients", `${f(100 * saturated64.passes.padding)} % of computed tokens (≤ 20 %)`, saturated64.passes.padding <= 0.2);
target("4. useful tokens/s / engine unpadded", `${f(saturated64.usefulTokensPerSecond, 0)} / ${f(engineTokensPerSecond, 0)} = ${f((100 * saturated64.usefulTokensPerSecond) / engineTokensPerSecond, 0)} % (≥ 75 %)`, saturated64.usefulTokensPerSecond / engineTokensPerSecond >= 0.75);
target("4. throughput 64 clients / 8 clients", `${f(saturated64.rps)} / ${f(saturated8.rps)} = ${f(saturated64.rps / saturated8.rps, 2)} (≥ 1)`, saturated64.rps >= saturated8.rps);
const errors = [saturated64, saturated8, fifo64, ...mixedSteps.values()].reduce((n, s) => n + s.errors, 0);
log(`non-200 answers in the load steps: ${errors}; whole run ${f((performance.now() - started) / 1000, 0)} s`);

const report = [
  ...lines.slice(0, 2),
  "",
  "| target | figures | |",
  "|---|---|---|",
  ...results,
  "",
  "## Log",
  "",
  ...lines.slice(2).map((l) => `- ${l}`),
  "",
].join("\n");
const out = join(ROOT, "bench", "results", `serving-${args.name ?? new Date().toISOString().replace(/[:.]/g, "-")}.md`);
writeFileSync(out, report);
if (args.publish) writeFileSync(join(ROOT, "bench", "SERVING.md"), report);
console.log(`report: ${out}${args.publish ? " and bench/SERVING.md" : ""}`);
process.exit(existsSync(out) ? 0 : 1);
