import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { DEFAULT_CONFIG, effectiveMaxSeqLen } from "../../src/config.js";
import { loadBackbone } from "../../src/engine/backbone.js";
import { FusionEngine } from "../../src/engine/engine.js";
import { routeFeeds } from "../../src/engine/layout.js";
import { packBatch } from "../../src/engine/packing.js";
import { readout } from "../../src/engine/readout.js";
import { TextTokenizer } from "../../src/engine/tokenizer.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { loadTweets } from "../inputs.js";
import { machineLine, othersProbe } from "../machine.js";
import { resolvePython } from "../python.js";
import { median, quantile } from "../stats.js";
import { latencies, runLoad } from "./load.js";
import { phaseDelta, phaseMeans, scrapePhases, type PhaseTotals } from "./phases.js";
import { startChild, stopChild, type ChildServer } from "../server.js";

/**
 * Latency at low load and throughput against a Python server, in one run (README: Benchmarks):
 * p50 at 1 client against the engine alone running the same single inputs one pass each, and
 * requests/s at 1, 8 and 64 closed-loop clients for this server with its defaults, with the
 * earlier 5 ms wait for company, in int8 and with `--precision auto`, and for FastAPI + `adapters`
 * (python/baseline/fastapi_server.py, one forward per request). Every case runs in blocks that
 * alternate with the others', twice, so drift of the machine's speed weighs on all of them. For
 * this server's 1-client blocks, the report gives the mean of each phase of a request (from the
 * server's fusion_request_phase_seconds), so what is not the forward pass shows.
 *
 *   npx tsx bench/serving/latency.ts [--threads 2] [--quick] [--publish] [--name NAME]
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const { values: args } = parseArgs({
  options: { threads: { type: "string", default: "2" }, quick: { type: "boolean" }, publish: { type: "boolean" }, name: { type: "string" } },
});
const threads = Number(args.threads);
const blockSeconds = args.quick ? 2 : 10;
const ROUNDS = 2;
const CLIENTS = [1, 8, 64];
const FUSION = "hate-fusion";
const lines: string[] = [];
const log = (line: string) => {
  lines.push(line);
  console.log(line);
};
const f = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "n/a");

const tweetDir = resolve(ROOT, process.env.TWEETEVAL_DIR ?? join("..", "shared", "data", "tweeteval"));
let tweets = loadTweets(tweetDir, 2000);
let tweetSource = `TweetEval validation tweets (${tweets.length}, read at run time)`;
if (tweets.length === 0) {
  tweets = JSON.parse(readFileSync(join(ROOT, "test", "fixtures", "library-reference", "samples.json"), "utf8")).texts;
  tweetSource = `the committed sample texts (${tweets.length}); TweetEval not found at ${tweetDir}`;
}
const library = join(ROOT, "models");
const manifest = JSON.parse(readFileSync(join(library, "library.json"), "utf8"));
const backboneDir = resolve(library, manifest.backbone);
const python = resolvePython(ROOT);

log(`# Latency and Python baseline benchmark${args.name ? ` (${args.name})` : ""}`);
log(
  `Machine: ${machineLine()}; servers --threads ${threads}; route ${FUSION}; one tweet per request; inputs: ${tweetSource}; ` +
    `${args.quick ? "quick" : "full"} run (${blockSeconds} s blocks, ${ROUNDS} rounds), ${new Date().toISOString().slice(0, 10)}.`,
);

// ---- the servers ----
// Only the auto server logs at info, where its start-up line says what it chose (and each request is logged too, a cost the others do not pay).
let nextPort = 18000 + Math.floor(Math.random() * 2000);
const node = (name: string, flags: string[]) => {
  const port = nextPort++;
  return startChild({
    command: process.execPath,
    args: ["--import", "tsx", join(ROOT, "src", "main.ts"), "--library", library, "--port", String(port), "--threads", String(threads), "--log-level", name === "auto" ? "info" : "warn", ...flags],
    port,
    cwd: ROOT,
    logFile: join(ROOT, "bench", "results", `latency-${name}.log`),
    readyTimeoutMs: 120_000,
  });
};
/** `ours`: this server, whose /metrics gives the phases of its requests. */
const cases: { name: string; what: string; ours: boolean; start: () => Promise<ChildServer> }[] = [
  { name: "default", what: "this server, defaults (float32, --max-wait-ms 0)", ours: true, start: () => node("default", []) },
  { name: "wait5", what: "this server, --max-wait-ms 5 (the earlier default)", ours: true, start: () => node("wait5", ["--max-wait-ms", "5"]) },
  { name: "int8", what: "this server, --precision int8", ours: true, start: () => node("int8", ["--precision", "int8"]) },
  { name: "auto", what: "this server, --precision auto", ours: true, start: () => node("auto", ["--precision", "auto"]) },
  {
    name: "python",
    what: "FastAPI + adapters (python/baseline/fastapi_server.py)",
    ours: false,
    start: () => {
      const port = nextPort++;
      return startChild({
        command: python,
        args: [join(ROOT, "python", "baseline", "fastapi_server.py"), "--library", library, "--fusion", FUSION, "--port", String(port), "--threads", String(threads)],
        port,
        cwd: ROOT,
        logFile: join(ROOT, "bench", "results", "latency-python.log"),
        readyPath: "/health",
        env: { PYTHONWARNINGS: "ignore" },
        readyTimeoutMs: 300_000,
      });
    },
  },
];
const servers = new Map<string, ChildServer>();
for (const c of cases) servers.set(c.name, await c.start());
const autoLog = readFileSync(join(ROOT, "bench", "results", "latency-auto.log"), "utf8");
const autoChoice = /"precision":"(\w+)"/.exec(autoLog)?.[1] ?? "?";
const autoReason = /"precisionReason":"([^"]*)"/.exec(autoLog)?.[1];
log(`--precision auto chose ${autoChoice}${autoReason ? `: ${autoReason}` : ""}`);

// ---- the engine alone: the server's graph (route slots, direct slots, packed rows), one tweet per pass, readout included ----
const backbone = await loadBackbone(backboneDir);
const tokenizer = await TextTokenizer.load(backboneDir, effectiveMaxSeqLen(DEFAULT_CONFIG, backbone.config.maxPositions));
const route = (await AdapterLibrary.open(library, backbone.config)).route(FUSION);
const engine = await FusionEngine.create(backbone, {
  device: "cpu",
  threads,
  variant: "fused",
  slots: DEFAULT_CONFIG.routeSlots,
  directSlots: DEFAULT_CONFIG.directRouteSlots,
  packed: true,
});
const feeds = await routeFeeds(backbone.config, route);
const singles = tweets.map((t) => packBatch([tokenizer.encode(t).ids]));
for (let i = 0; i < 5; i++) await engine.run(singles[i], feeds);

let cursor = 0;
const nextTweet = () => tweets[cursor++ % tweets.length];

interface Measured {
  readonly ms: number[];
  readonly count: number;
  readonly seconds: number;
  readonly errors: number;
  readonly othersPercent: number;
  readonly othersSum: number;
  readonly blocks: number;
}
const measured = new Map<string, Measured>();
const add = (key: string, ms: number[], seconds: number, errors: number, others: number) => {
  const m = measured.get(key) ?? { ms: [], count: 0, seconds: 0, errors: 0, othersPercent: 0, othersSum: 0, blocks: 0 };
  measured.set(key, {
    ms: [...m.ms, ...ms],
    count: m.count + ms.length,
    seconds: m.seconds + seconds,
    errors: m.errors + errors,
    othersPercent: Math.max(m.othersPercent, others),
    othersSum: m.othersSum + others,
    blocks: m.blocks + 1,
  });
};

/**
 * Measures once, with other processes' CPU beside it. No retries: on a machine shared with steady
 * work, waiting for quiet only lengthens the run; alternating blocks spread that work over every
 * case, and the report gives its share.
 */
async function withOthers<T>(measure: () => Promise<T>): Promise<{ value: T; others: number }> {
  const others = othersProbe();
  const value = await measure();
  return { value, others: others() };
}

async function engineBlock(): Promise<void> {
  const { value, others } = await withOthers(async () => {
    const times: number[] = [];
    const end = performance.now() + blockSeconds * 1000;
    // The same tweets, in the same order, as the 1-client blocks send.
    for (let i = 0; performance.now() < end; i++) {
      const batch = singles[i % singles.length];
      const t0 = performance.now();
      readout(route.head, await engine.run(batch, feeds), batch, backbone.config.hiddenSize, false);
      times.push(performance.now() - t0);
    }
    return times;
  });
  add("engine", value, blockSeconds, 0, others);
}

/** By case: the phases of the requests of its 1-client blocks. */
const phases = new Map<string, PhaseTotals>();

async function serverBlock({ name, ours }: { name: string; ours: boolean }, clients: number): Promise<void> {
  const base = servers.get(name)!.base;
  const next = () => ({ route: FUSION, inputs: [nextTweet()] });
  await runLoad({ base, clients, seconds: 1, next });
  const phasesBefore = ours && clients === 1 ? await scrapePhases(base) : undefined;
  const { value: answers, others } = await withOthers(async () => {
    if (clients === 1) cursor = 0;
    return runLoad({ base, clients, seconds: blockSeconds, next });
  });
  if (phasesBefore) phases.set(name, phaseDelta(phasesBefore, await scrapePhases(base), phases.get(name)));
  add(`${name} ${clients}`, latencies(answers), blockSeconds, answers.filter((a) => a.status !== 200).length, others);
}

const started = performance.now();
for (let round = 0; round < ROUNDS; round++) {
  for (const clients of CLIENTS) {
    if (clients === 1) await engineBlock();
    for (const c of cases) await serverBlock(c, clients);
  }
}
await engine.close();
for (const server of servers.values()) await stopChild(server);

// ---- report ----
const rps = (key: string) => measured.get(key)!.count / measured.get(key)!.seconds;
const p50 = (key: string) => median(measured.get(key)!.ms);
const p99 = (key: string) => quantile(measured.get(key)!.ms, 0.99);
const table = ["| case | " + CLIENTS.map((c) => `${c} client${c > 1 ? "s" : ""}`).join(" | ") + " |", "|---|" + CLIENTS.map(() => "---|").join("")];
for (const c of cases) {
  table.push(`| ${c.what} | ` + CLIENTS.map((n) => `${f(rps(`${c.name} ${n}`))} req/s, p50 ${f(p50(`${c.name} ${n}`))} ms, p99 ${f(p99(`${c.name} ${n}`))} ms`).join(" | ") + " |");
}
const engineKey = measured.get("engine")!;
const errors = [...measured.values()].reduce((n, m) => n + m.errors, 0);
const others = Math.max(...[...measured.values()].map((m) => m.othersPercent));
const othersMean = [...measured.values()].reduce((sum, m) => sum + m.othersSum, 0) / [...measured.values()].reduce((n, m) => n + m.blocks, 0);
log(`engine alone, one tweet per pass (${DEFAULT_CONFIG.routeSlots} route slots and ${DEFAULT_CONFIG.directRouteSlots} direct, packed graph, readout included): p50 ${f(median(engineKey.ms))} ms over ${engineKey.count} passes`);
for (const [name, totals] of phases) {
  const { line, sumMs, requests } = phaseMeans(totals);
  const ms = measured.get(`${name} 1`)!.ms;
  log(`${name}, 1 client, where a request's time went (means over ${requests} requests, from /metrics): ${line}; together ${f(sumMs, 2)} ms of ${f(ms.reduce((a, b) => a + b, 0) / ms.length, 2)} ms at the client`);
}
log(`non-200 answers: ${errors}; other processes used ${f(othersMean, 0)} % of a core on average during the blocks (at most ${f(others, 0)} %); whole run ${f((performance.now() - started) / 1000, 0)} s`);

const results: string[] = [];
const target = (name: string, figures: string, ok: boolean) => {
  results.push(`| ${name} | ${figures} | ${ok ? "holds" : "**NOT MET**"} |`);
  log(`${name}: ${figures} -> ${ok ? "holds" : "NOT MET"}`);
};
const ratio = (a: number, b: number) => a / b;
const latencyRatio = ratio(p50("default 1"), median(engineKey.ms));
target("1. p50 at 1 client / engine alone", `${f(p50("default 1"))} / ${f(median(engineKey.ms))} ms = ${f(latencyRatio, 2)} (≤ 1.3)`, latencyRatio <= 1.3);
target("1. requests/s at 1 client / Python", `${f(rps("default 1"))} / ${f(rps("python 1"))} = ${f(ratio(rps("default 1"), rps("python 1")), 2)} (≥ 4)`, rps("default 1") >= 4 * rps("python 1"));
target("2. requests/s at 64 clients / --max-wait-ms 5", `${f(rps("default 64"))} / ${f(rps("wait5 64"))} = ${f(ratio(rps("default 64"), rps("wait5 64")), 2)} (≥ 1.0)`, rps("default 64") >= rps("wait5 64"));
target("2. requests/s at 64 clients / Python", `${f(rps("default 64"))} / ${f(rps("python 64"))} = ${f(ratio(rps("default 64"), rps("python 64")), 2)} (≥ 6)`, rps("default 64") >= 6 * rps("python 64"));
for (const n of [1, 64]) {
  const int8 = ratio(rps(`int8 ${n}`), rps(`default ${n}`));
  const auto = ratio(rps(`auto ${n}`), rps(`default ${n}`));
  target(
    `4. requests/s at ${n} client${n > 1 ? "s" : ""}, int8 / float32; auto (${autoChoice}) / float32`,
    `${f(int8, 2)}; ${f(auto, 2)} (int8 ≥ 1.0, or auto chose float32)`,
    int8 >= 1 || autoChoice === "float32",
  );
}
target("non-200 answers", `${errors}`, errors === 0);

const report = [...lines.slice(0, 2), "", ...table, "", "| target | figures | |", "|---|---|---|", ...results, "", "## Log", "", ...lines.slice(2).map((l) => `- ${l}`), ""].join("\n");
const out = join(ROOT, "bench", "results", `latency-${args.name ?? new Date().toISOString().replace(/[:.]/g, "-")}.md`);
writeFileSync(out, report);
if (args.publish) writeFileSync(join(ROOT, "bench", "LATENCY.md"), report);
console.log(`report: ${out}${args.publish ? " and bench/LATENCY.md" : ""}`);
process.exit(0);
