import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Agent } from "node:http";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  adapterFiles,
  adapterNames,
  BERT_BASE,
  fusionRing,
  MINILM,
  writeFiles,
  writeScaleLibrary,
  type BackboneShape,
  type ScaleLibrarySpec,
} from "../test/fixtures/scale-library.js";
import { loadTweets } from "./inputs.js";
import { machineLine, othersProbe } from "./machine.js";
import { resolvePython } from "./python.js";
import { rssBytes, startChild, stopChild, type ChildServer } from "./server.js";
import { counterDiff, scrapeCounters } from "./serving/counters.js";
import { latencies, post, runLoad, type Answer } from "./serving/load.js";
import { median, quantile } from "./stats.js";

/**
 * The server at the AdapterFusion paper's scale and beyond, against FastAPI + `adapters` loading the
 * same library in the same run (python/bench/adapters_server.py): ready seconds, RSS, the swap of an
 * adapter every fusion uses, throughput at 1 and 32 clients, a cold route's first answer, and how
 * each grows with fusions F, adapters per fusion N and hidden size d; and a library of 64 fusion
 * routes on MiniLM under mixed traffic. Libraries of random weights come from the generator of
 * test/fixtures/scale-library.ts. `npm run bench:scale` (bench/README.md).
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean" },
    cases: { type: "string" },
    threads: { type: "string", default: "2" },
    "no-python": { type: "boolean" },
    publish: { type: "boolean" },
    name: { type: "string" },
  },
});
const threads = Number(args.threads);
const blockSeconds = args.quick ? 2 : 10;
const TOKEN = "scale-bench-admin-token";
const lines: string[] = [];
const log = (line: string) => {
  lines.push(line);
  console.log(line);
};
const f = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "n/a");
/** A load block during which other processes used at least this share of one core is marked †. */
const DISTURBED = 25;
const mb = (bytes: number) => f(bytes / 1e6, 0);

interface Case {
  readonly id: string;
  /** Which sweep the case belongs to: its row is read against the others of the group. */
  readonly group: string;
  readonly spec: ScaleLibrarySpec;
  readonly python: boolean;
  /** Repeated swaps of a00 under load on routes that do not use it, against swap-free blocks. */
  readonly swapsUnderLoad: boolean;
}

const shapeName = (s: BackboneShape) => (s.hidden === 768 ? "BERT-base" : "MiniLM");
function standard(id: string, group: string, backbone: BackboneShape, fusions: number, perFusion: number, extra: Partial<Case> = {}): Case {
  return { id, group, spec: { backbone, adapters: 16, fusions: fusionRing(fusions, perFusion, 16) }, python: true, swapsUnderLoad: false, ...extra };
}
const CASES: Case[] = args.quick
  ? [standard("quick", "quick", MINILM, 2, 2, { spec: { backbone: MINILM, adapters: 4, fusions: fusionRing(2, 2, 4) }, swapsUnderLoad: true })]
  : [
      standard("paper", "paper", BERT_BASE, 4, 16, { swapsUnderLoad: true }),
      standard("F1", "F", BERT_BASE, 1, 16),
      standard("F16", "F", BERT_BASE, 16, 16),
      standard("N2", "N", BERT_BASE, 1, 2),
      standard("N8", "N", BERT_BASE, 1, 8),
      standard("d384", "d", MINILM, 4, 16),
    ];
/** Alternating rounds of a single-route and a mixed block in the 64-route case. */
const ROUTES64_ROUNDS = 3;
const ROUTES64 = { id: "routes64", spec: { backbone: MINILM, adapters: 64, fusions: fusionRing(64, 5, 64) } as ScaleLibrarySpec };
const wanted = args.cases?.split(",");
const cases = wanted ? CASES.filter((c) => wanted.includes(c.id)) : CASES;
const withRoutes64 = !args.quick && (!wanted || wanted.includes(ROUTES64.id));

const tweetDir = resolve(ROOT, process.env.TWEETEVAL_DIR ?? join("..", "shared", "data", "tweeteval"));
let tweets = loadTweets(tweetDir, 4000);
let tweetSource = `TweetEval validation tweets (${tweets.length})`;
if (tweets.length === 0) {
  tweets = JSON.parse(readFileSync(join(ROOT, "test", "fixtures", "library-reference", "samples.json"), "utf8")).texts;
  tweetSource = `the committed sample texts (${tweets.length}); TweetEval not found`;
}
let tweetCursor = 0;
const nextTweet = () => tweets[tweetCursor++ % tweets.length];

/** The lazy-residency flag where this server has it (it decides which routes stay laid out). */
const residencyFlag = readFileSync(join(ROOT, "src", "config.ts"), "utf8").includes('flag: "max-resident-routes"');
const python = resolvePython(ROOT);
// The report names the interpreter without the machine's own folders.
const interpreterName = python.startsWith(`${ROOT}/`) ? relative(ROOT, python) : basename(python);
let nextPort = 19000 + Math.floor(Math.random() * 2000);

function startOurs(library: string, flags: string[] = []): Promise<ChildServer> {
  const port = nextPort++;
  return startChild({
    command: process.execPath,
    args: ["--import", "tsx", join(ROOT, "src", "main.ts"), "--library", library, "--port", String(port), "--threads", String(threads), "--log-level", "warn", ...flags],
    port,
    cwd: ROOT,
    logFile: join(ROOT, "bench", "results", "scale-server.log"),
    env: { ADMIN_TOKEN: TOKEN },
    readyTimeoutMs: 60 * 60_000,
  });
}

function startPython(library: string): Promise<ChildServer> {
  const port = nextPort++;
  return startChild({
    command: python,
    args: [join(ROOT, "python", "bench", "adapters_server.py"), "--library", library, "--port", String(port), "--threads", String(threads)],
    port,
    cwd: ROOT,
    logFile: join(ROOT, "bench", "results", "scale-python.log"),
    env: { PYTHONWARNINGS: "ignore" },
    readyTimeoutMs: 60 * 60_000,
  });
}

interface Load {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly othersPercent: number;
}
function summarize(answers: readonly Answer[], seconds: number, othersPercent: number): Load {
  const ms = latencies(answers);
  return { rps: answers.length / seconds, p50: median(ms), p99: quantile(ms, 0.99), errors: answers.filter((a) => a.status !== 200).length, othersPercent };
}
/** A closed-loop block after a 1 s warm-up, one tweet per request. */
async function load(base: string, clients: number, seconds: number, routeOf: (client: number, i: number) => string, during?: () => Promise<void>): Promise<Load> {
  const next = (c: number, i: number) => ({ route: routeOf(c, i), inputs: [nextTweet()] });
  await runLoad({ base, clients, seconds: 1, next });
  const others = othersProbe();
  const [answers] = await Promise.all([runLoad({ base, clients, seconds, next }), during?.()]);
  return summarize(answers, seconds, others());
}
/** The block of median throughput. */
const medianLoad = (blocks: readonly Load[]) => [...blocks].sort((a, b) => a.rps - b.rps)[Math.floor(blocks.length / 2)];
const describe = (l: Load) => `${f(l.rps)} req/s, p50 ${f(l.p50)} ms, p99 ${f(l.p99)} ms, ${l.errors} non-2xx, others ${f(l.othersPercent, 0)} % of a core`;

/** First answer of a route no request has used yet, ms. */
async function firstAnswer(base: string, route: string, agent: Agent): Promise<{ ms: number; status: number }> {
  const t0 = performance.now();
  const answer = await post(base, `/v1/predict/${route}`, { inputs: [nextTweet()] }, agent);
  return { ms: performance.now() - t0, status: answer.status };
}

/**
 * Sends one request at a time to `route` until one is served from the route's layout (built in
 * the background after its first request): the throughput blocks then measure the route as it is
 * served steadily. A server that does not count the forms is taken as serving it so at once.
 */
async function untilResident(base: string, route: string, agent: Agent): Promise<{ seconds: number; requests: number }> {
  const started = performance.now();
  const folded = async () => Number(/^fusion_pass_slots_total\{form="folded"\} (\d+)/m.exec(await (await fetch(`${base}/metrics`)).text())?.[1] ?? NaN);
  for (let requests = 1; ; requests++) {
    const before = await folded();
    await post(base, `/v1/predict/${route}`, { inputs: [nextTweet()] }, agent);
    if (Number.isNaN(before) || (await folded()) > before || performance.now() - started > 120_000) return { seconds: (performance.now() - started) / 1000, requests };
  }
}

/**
 * A routes64 block, with the inputs its passes carried on average and the tokens they computed per
 * real token: fewer inputs to a pass leave more of its packed rows as padding.
 */
async function routes64Block(base: string, routeOf: (client: number, i: number) => string): Promise<{ load: Load; perPass: number; computedPerReal: number }> {
  const before = await scrapeCounters(base);
  const block = await load(base, 32, blockSeconds, routeOf);
  const added = counterDiff(before, await scrapeCounters(base));
  return {
    load: block,
    perPass: added.get("fusion_pass_inputs_sum")! / added.get("fusion_pass_inputs_count")!,
    computedPerReal: added.get('fusion_pass_tokens_total{kind="computed"}')! / added.get('fusion_pass_tokens_total{kind="real"}')!,
  };
}

/** The server's residency and layout metrics, as exposed (whatever of them this server has). */
async function residencyMetrics(base: string): Promise<string[]> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return text.split("\n").filter((l) => !l.startsWith("#") && /resident|evict|layout|pass_slots|memory_bytes/.test(l) && !/_bucket\{/.test(l));
}

interface Row {
  readonly c: Case;
  readonly bytes: number;
  readonly ready: number;
  readonly rss: number;
  readonly cold: number;
  readonly swap: number;
  readonly swapStatus: number;
  readonly c1: Load;
  readonly c32: Load;
  readonly py?: { ready: number; rss: number; c1: Load; c32: Load } | { failed: string };
  readonly swapsUnderLoad?: { calm: Load; during: Load; swaps: number[]; statuses: number[] };
}

async function runCase(c: Case): Promise<Row> {
  const s = c.spec;
  const fusions = s.fusions.map((x) => x.name);
  log(`## ${c.id}: ${shapeName(s.backbone)} (d=${s.backbone.hidden}, ${s.backbone.layers} layers), ${s.adapters} adapters, F=${fusions.length} fusions of N=${s.fusions[0].adapters.length}`);
  const library = mkdtempSync(join(tmpdir(), `scale-bench-${c.id}-`));
  try {
    const bytes = await writeScaleLibrary(library, s);
    // Two versions of a00 that differ from the live one and from each other: the swaps alternate between them.
    const staged = ["b", "c"].map((v) => `incoming/a00-${v}`);
    for (const [i, dir] of staged.entries()) await writeFiles(join(library, dir), adapterFiles(s.backbone, "a00", `adapters/a00#${i + 2}`));
    log(`library: ${mb(bytes)} MB on disk`);

    const ours = await startOurs(library);
    const rss = rssBytes(ours.child.pid);
    log(`server: ready in ${f(ours.readySeconds)} s, RSS ${mb(rss)} MB (${f(rss / bytes, 2)}× the library on disk)`);
    const agent = new Agent({ keepAlive: true });
    const cold = await firstAnswer(ours.base, fusions[fusions.length - 1], agent);
    log(`first answer of ${fusions[fusions.length - 1]}: ${f(cold.ms)} ms (${cold.status})`);
    const folded = await untilResident(ours.base, fusions[0], agent);
    log(`${fusions[0]} laid out in the background under 1 client's load: served from its layout after ${f(folded.seconds, 1)} s, ${folded.requests - 1} requests served unfolded before`);
    const c1 = await load(ours.base, 1, blockSeconds, () => fusions[0]);
    const c32 = await load(ours.base, 32, blockSeconds, () => fusions[0]);
    log(`server ${fusions[0]}, 1 client: ${describe(c1)}`);
    log(`server ${fusions[0]}, 32 clients: ${describe(c32)}`);
    const put = async (k: number) => {
      const t0 = performance.now();
      const answer = await post(ours.base, "/v1/admin/adapters/a00", { path: staged[k % 2] }, agent, { authorization: `Bearer ${TOKEN}` });
      return { seconds: (performance.now() - t0) / 1000, status: answer.status };
    };
    const first = await put(0);
    log(`PUT a00 (used by ${s.fusions.filter((x) => x.adapters.includes("a00")).length} of ${fusions.length} fusions): ${f(first.seconds, 2)} s (${first.status})`);
    let swapsUnderLoad: Row["swapsUnderLoad"];
    if (c.swapsUnderLoad) {
      // Routes that do not use a00: its swap must not slow them down.
      const others = adapterNames(s.adapters).filter((a) => a !== "a00" && !s.fusions.some((x) => x.adapters.includes(a) && x.adapters.includes("a00")));
      const steady = others.length ? others : adapterNames(s.adapters).slice(1);
      const routeOf = (cl: number, i: number) => steady[(cl + i) % steady.length];
      const swapBlock = Math.max(blockSeconds, Math.ceil(3 * first.seconds) + 1);
      const swaps: number[] = [];
      const statuses: number[] = [];
      const swapper = async () => {
        const end = performance.now() + swapBlock * 1000;
        for (let k = 1; performance.now() + first.seconds * 1000 < end; k++) {
          const r = await put(k);
          swaps.push(r.seconds);
          statuses.push(r.status);
          await new Promise((res) => setTimeout(res, 200));
        }
      };
      const calm = await load(ours.base, 8, blockSeconds, routeOf);
      const during = await load(ours.base, 8, swapBlock, routeOf, swapper);
      log(`8 clients on ${steady.length} routes without a00, swap-free: ${describe(calm)}`);
      log(`same during ${swaps.length} back-to-back PUTs of a00 (median ${f(median(swaps), 2)} s, statuses ${[...new Set(statuses)].join(",")}): ${describe(during)}`);
      swapsUnderLoad = { calm, during, swaps, statuses };
    }
    agent.destroy();
    await stopChild(ours);

    let py: Row["py"];
    if (c.python && !args["no-python"]) {
      try {
        const server = await startPython(library);
        const pyRss = rssBytes(server.child.pid);
        log(`FastAPI + adapters: ready in ${f(server.readySeconds)} s, RSS ${mb(pyRss)} MB`);
        const p1 = await load(server.base, 1, blockSeconds, () => fusions[0]);
        const p32 = await load(server.base, 32, blockSeconds, () => fusions[0]);
        log(`FastAPI + adapters ${fusions[0]}, 1 client: ${describe(p1)}`);
        log(`FastAPI + adapters ${fusions[0]}, 32 clients: ${describe(p32)}`);
        await stopChild(server);
        py = { ready: server.readySeconds, rss: pyRss, c1: p1, c32: p32 };
      } catch (err) {
        py = { failed: (err as Error).message };
        log(`FastAPI + adapters did not run: ${py.failed}`);
      }
    }
    return { c, bytes, ready: ours.readySeconds, rss, cold: cold.ms, swap: first.seconds, swapStatus: first.status, c1, c32, py, swapsUnderLoad };
  } finally {
    rmSync(library, { recursive: true, force: true });
  }
}

interface Routes64 {
  readonly ran: boolean;
  readonly note: string;
  readonly ready?: number;
  readonly rss?: number;
  readonly firsts?: { ms: number; status: number }[];
  readonly single?: Load;
  readonly mixed?: Load;
  readonly metrics?: string[];
}

async function runRoutes64(): Promise<Routes64> {
  const s = ROUTES64.spec;
  const fusions = s.fusions.map((x) => x.name);
  log(`## routes64: MiniLM, ${s.adapters} adapters, ${fusions.length} fusion routes of 5 adapters each`);
  const flags = residencyFlag ? ["--max-resident-routes", "16"] : [];
  const note = residencyFlag ? "--max-resident-routes 16" : "this server has no --max-resident-routes: every route is laid out at start and stays resident";
  const library = mkdtempSync(join(tmpdir(), "scale-bench-routes64-"));
  try {
    const bytes = await writeScaleLibrary(library, s);
    let ours: ChildServer;
    try {
      ours = await startOurs(library, flags);
    } catch (err) {
      log(`the server did not start on this library: ${(err as Error).message}`);
      return { ran: false, note: `${note}; the server did not start: ${(err as Error).message}` };
    }
    const rss = rssBytes(ours.child.pid);
    log(`${note}; library ${mb(bytes)} MB; ready in ${f(ours.readySeconds)} s, RSS ${mb(rss)} MB`);
    const agent = new Agent({ keepAlive: true });
    const firsts: { ms: number; status: number }[] = [];
    for (const route of fusions) firsts.push(await firstAnswer(ours.base, route, agent));
    agent.destroy();
    const ok = firsts.filter((x) => x.status === 200).length;
    log(`first answer of each of the ${fusions.length} routes, one after another: ${ok} answered 200; median ${f(median(firsts.map((x) => x.ms)))} ms, max ${f(Math.max(...firsts.map((x) => x.ms)))} ms`);
    // Single-route and mixed blocks alternate, and the medians are compared: a block's figure moves
    // with what the layout thread is doing meanwhile, and alternating spreads that over both.
    const singles: Load[] = [];
    const mixeds: Load[] = [];
    for (let round = 1; round <= ROUTES64_ROUNDS; round++) {
      const one = await routes64Block(ours.base, () => fusions[0]);
      singles.push(one.load);
      log(`round ${round}, 32 clients on one route: ${describe(one.load)}; ${f(one.perPass)} inputs per pass, ${f(one.computedPerReal, 2)} tokens computed per real token`);
      const all = await routes64Block(ours.base, (cl, i) => fusions[(cl * 7 + i) % fusions.length]);
      mixeds.push(all.load);
      log(`round ${round}, 32 clients over all ${fusions.length} routes: ${describe(all.load)}; ${f(all.perPass)} inputs per pass, ${f(all.computedPerReal, 2)} tokens computed per real token`);
    }
    const single = medianLoad(singles);
    const mixed = medianLoad(mixeds);
    log(`median of ${ROUTES64_ROUNDS} rounds: one route ${f(single.rps)} req/s, all ${fusions.length} routes ${f(mixed.rps)} req/s; mixed / single ${f(mixed.rps / single.rps, 2)}`);
    const metrics = await residencyMetrics(ours.base);
    for (const m of metrics) log(`  ${m}`);
    await stopChild(ours);
    return { ran: true, note, ready: ours.readySeconds, rss, firsts, single, mixed, metrics };
  } finally {
    rmSync(library, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------

const started = performance.now();
log(`# Scale benchmark${args.name ? ` (${args.name})` : ""}`);
log(
  `Machine: ${machineLine()}; both servers --threads ${threads}, float32; inputs: ${tweetSource}, one per request; ${args.quick ? "quick" : "full"} run ` +
    `(load blocks of ${blockSeconds} s), ${new Date().toISOString().slice(0, 10)}; FastAPI + adapters: ${args["no-python"] ? "not run (--no-python)" : interpreterName}.`,
);
const rows: Row[] = [];
for (const c of cases) rows.push(await runCase(c));
const routes64 = withRoutes64 ? await runRoutes64() : undefined;
log(`whole run ${f((performance.now() - started) / 1000, 0)} s`);

// ---- report ----
const ratio = (a: number, b: number, digits = 2) => f(a / b, digits);
const pyOf = (r: Row) => (r.py && "ready" in r.py ? r.py : undefined);
const table: string[] = [
  "| case | library | MB on disk | ready s (adapters s, ratio) | RSS MB (× disk; adapters MB) | PUT a00 s | first answer of the last fusion, ms | c=1 req/s (adapters, ratio) | c=32 req/s (adapters, ratio) |",
  "|---|---|---:|---|---|---:|---:|---|---|",
];
for (const r of rows) {
  const s = r.c.spec;
  const p = pyOf(r);
  const vs = (ours: number, theirs: number | undefined) => (theirs === undefined ? f(ours, 1) : `${f(ours, 1)} (${f(theirs, 1)}, ${ratio(ours, theirs)}×)`);
  const loads = (ours: Load, theirs: Load | undefined) => vs(ours.rps, theirs?.rps) + ([ours, theirs].some((l) => l && l.othersPercent >= DISTURBED) ? " †" : "");
  table.push(
    `| ${r.c.id} | ${shapeName(s.backbone)}, ${s.adapters} adapters, F=${s.fusions.length}, N=${s.fusions[0].adapters.length} | ${mb(r.bytes)} | ${vs(r.ready, p?.ready)} | ${mb(r.rss)} (${f(r.rss / r.bytes, 2)}×${p ? `; ${mb(p.rss)}` : ""}) | ${f(r.swap, 2)}${r.swapStatus === 200 ? "" : ` (${r.swapStatus})`} | ${f(r.cold, 0)} | ${loads(r.c1, p?.c1)} | ${loads(r.c32, p?.c32)} |`,
  );
}
const acceptance: string[] = [];
const paper = rows.find((r) => r.c.id === "paper" || r.c.id === "quick");
if (paper) {
  const p = pyOf(paper);
  const check = (what: string, figure: string, ok: boolean | undefined) => acceptance.push(`| ${what} | ${figure} | ${ok === undefined ? "not measured" : ok ? "holds" : "**NOT MET**"} |`);
  check("ready / adapters' ready (≤ 1.5)", p ? `${f(paper.ready)} / ${f(p.ready)} s = ${ratio(paper.ready, p.ready)}` : "n/a", p ? paper.ready / p.ready <= 1.5 : undefined);
  check("RSS / library on disk (≤ 2)", `${mb(paper.rss)} / ${mb(paper.bytes)} MB = ${ratio(paper.rss, paper.bytes)}`, paper.rss / paper.bytes <= 2);
  check(`PUT of a00, used by ${paper.c.spec.fusions.filter((x) => x.adapters.includes("a00")).length} of ${paper.c.spec.fusions.length} fusions (≤ 3 s, 200)`, `${f(paper.swap, 2)} s (${paper.swapStatus})`, paper.swap <= 3 && paper.swapStatus === 200);
  const u = paper.swapsUnderLoad;
  if (u) {
    const nonOk = u.calm.errors + u.during.errors + u.statuses.filter((x) => x !== 200).length;
    check("predict p99 on other routes during swaps / swap-free (≤ 1.5)", `${f(u.during.p99)} / ${f(u.calm.p99)} ms = ${ratio(u.during.p99, u.calm.p99)} over ${u.swaps.length} swaps`, u.during.p99 / u.calm.p99 <= 1.5);
    check("non-2xx during the swap blocks (0)", String(nonOk), nonOk === 0);
    check("PUT of a00 under that load, median (≤ 3 s)", `${f(median(u.swaps), 2)} s over ${u.swaps.length} swaps`, median(u.swaps) <= 3);
  }
  check("throughput / adapters, c=1 (≥ 4)", p ? `${f(paper.c1.rps)} / ${f(p.c1.rps)} = ${ratio(paper.c1.rps, p.c1.rps)}` : "n/a", p ? paper.c1.rps / p.c1.rps >= 4 : undefined);
  check("throughput / adapters, c=32 (≥ 6)", p ? `${f(paper.c32.rps)} / ${f(p.c32.rps)} = ${ratio(paper.c32.rps, p.c32.rps)}` : "n/a", p ? paper.c32.rps / p.c32.rps >= 6 : undefined);
}
if (routes64?.ran) {
  const r = routes64;
  const ok = r.firsts!.filter((x) => x.status === 200).length;
  acceptance.push(`| 64 routes: all answer (${r.note}) | ${ok} of ${r.firsts!.length} | ${ok === r.firsts!.length ? "holds" : "**NOT MET**"} |`);
  acceptance.push(`| 64 routes: mixed over all / one route, 32 clients, medians of ${ROUTES64_ROUNDS} alternating blocks (≥ 0.8) | ${f(r.mixed!.rps)} / ${f(r.single!.rps)} = ${ratio(r.mixed!.rps, r.single!.rps)} | ${r.mixed!.rps / r.single!.rps >= 0.8 ? "holds" : "**NOT MET**"} |`);
  acceptance.push(`| 64 routes: first answer of a route, median / max ms | ${f(median(r.firsts!.map((x) => x.ms)))} / ${f(Math.max(...r.firsts!.map((x) => x.ms)))} | reported |`);
}
const report = [
  ...lines.slice(0, 2),
  "",
  "Every row is one library, written by test/fixtures/scale-library.ts; `adapters` is FastAPI + `adapters` loading the same library " +
    "(python/bench/adapters_server.py: backbone, every adapter and fusion with its head, one forward per route before /ready). " +
    "Ready is from process start to the first 200 of /ready; RSS right after. Throughput on the first fusion route.",
  "",
  ...table,
  "",
  `† other processes used ≥ ${DISTURBED} % of a core during one of the blocks compared (the log gives each block's figure).`,
  "",
  ...(acceptance.length ? ["| acceptance | figures | |", "|---|---|---|", ...acceptance, ""] : []),
  ...(routes64 && !routes64.ran ? [`64 routes: not run (${routes64.note}).`, ""] : []),
  "## Log",
  "",
  ...lines.slice(2).map((l) => (l.startsWith("#") ? `\n${l}\n` : `- ${l}`)),
  "",
].join("\n");
const out = join(ROOT, "bench", "results", `scale-${args.name ?? new Date().toISOString().replace(/[:.]/g, "-")}.md`);
writeFileSync(out, report);
if (args.publish) writeFileSync(join(ROOT, "bench", "SCALE.md"), report);
console.log(`report: ${out}${args.publish ? " and bench/SCALE.md" : ""}`);
process.exit(existsSync(out) ? 0 : 1);
