/**
 * `npm run bench`: the whole benchmark in one go (issue 6). See bench/README.md.
 *
 *   --quick             tiny repeat counts (development; figures are not meaningful)
 *   --threads N         intra-op threads for ONNX Runtime and torch alike (default: all cores)
 *   --shapes 1x16,...   engine-level shapes (default: batch 1, 8, 32 × 16, 64, 128 tokens)
 *   --no-reference      skip the Python AdapterHub reference
 *   --no-http           skip the HTTP level
 *   --no-engine         skip the engine level (development of the HTTP level)
 *   --server FILE       server entry for the HTTP level (default src/main.ts)
 *   --name NAME         results file name under bench/results/ (default: timestamp)
 *   --publish           also write bench/RESULTS.md and its plots (the committed report)
 *   --wait-quiet MIN    first wait up to MIN minutes until no other process uses the CPU
 *
 * Environment: PYTHON (default .venv/bin/python if present, else python3), TWEETEVAL_DIR
 * (default ../shared/data/tweeteval).
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { MAIN_N, openEngines, parityAgainst, runEngineBench } from "./engine-bench.js";
import { runHttpBench } from "./http-bench.js";
import { busyProcesses, CpuMonitor, guarded, machineLine } from "./machine.js";
import { resolvePython, runPython } from "./python.js";
import { computeTargets, renderMarkdown, targetLines, TARGET_SHAPES, withSecondPass, type BenchData, type ReferenceJson, type ReferenceResults } from "./report.js";
import { FULL, QUICK, type Guard } from "./stats.js";

const WEIGHTS_FORMAT = 1; // FORMAT in bench/make_weights.py
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BENCH = join(ROOT, "bench");
const RESULTS = join(BENCH, "results");
const BACKBONE = join(ROOT, "models", "backbones", "all-MiniLM-L6-v2");
const WEIGHTS = join(RESULTS, "weights");

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    threads: { type: "string" },
    shapes: { type: "string", default: "1x16,1x64,1x128,8x16,8x64,8x128,32x16,32x64,32x128" },
    "no-reference": { type: "boolean", default: false },
    "no-http": { type: "boolean", default: false },
    "no-engine": { type: "boolean", default: false },
    server: { type: "string" },
    name: { type: "string" },
    publish: { type: "boolean", default: false },
    "wait-quiet": { type: "string" },
  },
});

const started = new Date();
const t0 = performance.now();
const log = (line: string) => console.log(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${line}`);
const threads = args.threads ? Number(args.threads) : availableParallelism();
const shapes = args.shapes!.split(",");
const policy = args.quick ? QUICK : FULL;
/** Other processes above this share of one core during a measurement make it count as disturbed. */
const CONTENTION_THRESHOLD = 25;
const guard: Guard = (what, measure) => guarded(what, measure, { threshold: CONTENTION_THRESHOLD, retries: args.quick ? 0 : 3, log });
const python = resolvePython(ROOT);
// The report names the interpreter as the repository knows it, not by this machine's path.
const pythonShown = python.startsWith(ROOT) ? relative(ROOT, python) : python;
const name = args.name ?? started.toISOString().replace(/[:.]/g, "-").slice(0, 19);
mkdirSync(RESULTS, { recursive: true });

log(`bench: ${args.quick ? "quick" : "full"} run, ${threads} threads, python '${python}'`);
if (args["wait-quiet"]) {
  const deadline = Date.now() + Number(args["wait-quiet"]) * 60_000;
  let quiet = 0;
  let polls = 0;
  while (quiet < 5 && Date.now() < deadline) {
    const busy = await busyProcesses(2000);
    quiet = busy.length ? 0 : quiet + 1;
    if (busy.length && polls++ % 15 === 0) log(`waiting for a quiet machine: ${busy.map((p) => `${p.cpuPercent}% ${p.command.slice(0, 60)}`).join("; ")}`);
  }
  log(quiet >= 5 ? "machine quiet for 10 s; starting" : "machine still busy; starting anyway");
}
const busyBefore = await busyProcesses();
for (const p of busyBefore) log(`WARNING: pid ${p.pid} uses ${p.cpuPercent}% of a core (${p.command}): timings will be distorted`);
const monitor = new CpuMonitor();

// 1. Weights, written by the adapters library (cached; rebuilt when the format changes).
const readMeta = () => (existsSync(join(WEIGHTS, "meta.json")) ? JSON.parse(readFileSync(join(WEIGHTS, "meta.json"), "utf8")) : null);
if (readMeta()?.format !== WEIGHTS_FORMAT) {
  log("writing the bench weights with the adapters library (bench/make_weights.py)");
  const r = await runPython(python, [join(BENCH, "make_weights.py"), "--backbone", BACKBONE, "--out", WEIGHTS], ROOT, log);
  if (!r.ok) {
    console.error(`bench: could not write the bench weights with '${python}' (exit ${r.code}):\n${r.errorTail}`);
    console.error("Set PYTHON to an interpreter with python/requirements.txt installed (see bench/README.md).");
    process.exit(1);
  }
}
const weights = readMeta();

// 2. The AdapterHub reference (a separate process, so it runs alone on the cores).
async function runReference(referenceShapes: readonly string[], file: string): Promise<{ ok: true; json: ReferenceJson } | { ok: false; reason: string }> {
  const out = join(RESULTS, file);
  const r = await runPython(
    python,
    [
      join(BENCH, "reference.py"),
      ...["--library", WEIGHTS, "--fusion", `fuse${MAIN_N}`, "--threads", String(threads), "--shapes", referenceShapes.join(",")],
      ...["--plain-shapes", TARGET_SHAPES.join(","), "--int8-shapes", TARGET_SHAPES.join(",")],
      ...["--warmup", String(policy.warmup), "--min-reps", String(policy.minReps), "--max-reps", String(policy.maxReps)],
      ...["--min-seconds", String(policy.minSeconds), "--out", out],
      ...["--threshold", String(CONTENTION_THRESHOLD), "--retries", args.quick ? "0" : "3"],
    ],
    ROOT,
    log,
  );
  return r.ok ? { ok: true, json: JSON.parse(readFileSync(out, "utf8")) } : { ok: false, reason: `'${python}' exited with ${r.code}: ${r.errorTail.split("\n").pop()}` };
}
let reference: ReferenceResults = { ok: false, python: pythonShown, reason: "skipped (--no-reference)", times: {} };
let refParity: { batch: number; seq: number; hidden: number[]; logits: number[] } | undefined;
if (!args["no-reference"]) {
  log(`AdapterHub reference, fusion N=${MAIN_N}`);
  const r = await runReference(shapes, `${name}.reference.json`);
  if (r.ok) {
    const j = r.json;
    reference = { ok: true, python: pythonShown, torch: j.torch, adaptersVersion: j.adapters_version, attnImplementation: j.attn_implementation, times: j.shapes, othersPercent: j.others_percent, plainTimes: j.plain_shapes, int8Times: j.int8_shapes, int8Engine: j.int8_engine };
    refParity = j.parity;
  } else {
    reference = { ok: false, python: pythonShown, reason: r.reason, times: {} };
    log(`the AdapterHub reference could not run: ${reference.reason}`);
  }
}

// 3. This engine: plain, fused N=1,2,5,8, literal N=5.
log("engine level");
const loadStart = performance.now();
const engines = await openEngines(BACKBONE, WEIGHTS, threads);
const loadSeconds = (performance.now() - loadStart) / 1000;
const parity = refParity ? await parityAgainst(engines, refParity) : undefined;
if (parity) log(`parity with the reference: max |diff| hidden ${parity.hidden.toExponential(1)}, logits ${parity.logits.toExponential(1)}`);
const engine = { threads, loadSeconds, ...(await runEngineBench(engines, args["no-engine"] ? [] : shapes, policy, guard, log)) };
await engines.close();

// 3b. The reference once more at the targets' shapes, now that the engine has run: this machine's
// speed drifts by 10–25 % within minutes (shared host), and timing the reference before and after
// the engine level weighs such a drift on both sides alike. The targets use both passes' runs.
const afterShapes = TARGET_SHAPES.filter((s) => shapes.includes(s));
if (reference.ok && !args["no-engine"] && afterShapes.length) {
  log("AdapterHub reference again, at the targets' shapes");
  const r = await runReference(afterShapes, `${name}.reference-after.json`);
  if (r.ok) reference = withSecondPass(reference, r.json);
  else log(`the second reference pass could not run (${r.reason}); the targets use the first pass only`);
}

// 4. HTTP level.
const http = args["no-http"] ? { skipped: "skipped (--no-http)" } : await runHttpBench({ root: ROOT, quick: args.quick!, threads, weightsDir: WEIGHTS, serverLog: join(RESULTS, `${name}.server.log`), guard, serverEntry: args.server, log });

const contention = monitor.stop();
const busyAfter = await busyProcesses();
const ortVersion = JSON.parse(readFileSync(join(ROOT, "node_modules", "onnxruntime-node", "package.json"), "utf8")).version;
const data: BenchData = {
  startedAt: started.toISOString(),
  finishedAt: new Date().toISOString(),
  seconds: (performance.now() - t0) / 1000,
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
  mode: args.quick ? "quick" : "full",
  machine: machineLine(),
  threads,
  ortVersion,
  busyBefore,
  busyAfter,
  contention,
  weights,
  reference,
  engine,
  parity,
  http,
  gpu: "no GPU in this run; the engine level ran on the CPU only (ONNX Runtime's CUDA execution provider was not measured).",
  plots: {},
};

// 5. Plots (matplotlib) and the report.
const jsonPath = join(RESULTS, `${name}.json`);
writeFileSync(jsonPath, JSON.stringify(data, null, 1));
const plotRun = await runPython(python, [join(BENCH, "plot.py"), jsonPath, join(RESULTS, name)], ROOT, log);
const plots = plotRun.ok
  ? {
      http: existsSync(join(RESULTS, `${name}-http.png`)) ? `${name}-http.png` : undefined,
      byN: existsSync(join(RESULTS, `${name}-n.png`)) ? `${name}-n.png` : undefined,
    }
  : { note: `Plots not drawn: '${python}' could not run bench/plot.py (${plotRun.errorTail.split("\n").pop()}).` };
const final: BenchData = { ...data, plots };
writeFileSync(jsonPath, JSON.stringify(final, null, 1));
const targets = computeTargets(final);
const mdPath = join(RESULTS, `${name}.md`);
writeFileSync(mdPath, renderMarkdown(final, targets));
if (args.publish) {
  const pub: BenchData = { ...final, plots: { http: plots.http && "RESULTS-http.png", byN: plots.byN && "RESULTS-n.png", note: plots.note } };
  if (plots.http) copyFileSync(join(RESULTS, plots.http), join(BENCH, "RESULTS-http.png"));
  if (plots.byN) copyFileSync(join(RESULTS, plots.byN), join(BENCH, "RESULTS-n.png"));
  writeFileSync(join(BENCH, "RESULTS.md"), renderMarkdown(pub, targets));
}

console.log("");
for (const line of targetLines(targets)) console.log(line);
if (!reference.ok) console.log(`NOTE: the AdapterHub reference could not run: ${reference.reason}`);
if (busyBefore.length || busyAfter.length || contention.busyIntervals > 0) {
  console.log(`NOTE: other processes used the CPU during this run (${contention.busyIntervals} of ${contention.intervals} samples); the figures are distorted.`);
}
console.log(`\nreport: ${relative(ROOT, mdPath)}${args.publish ? " (and bench/RESULTS.md)" : ""}`);
