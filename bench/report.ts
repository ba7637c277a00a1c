import type { EngineCase, EngineResults } from "./engine-bench.js";
import type { HttpResults } from "./http-bench.js";
import type { BusyProcess } from "./machine.js";
import type { Precision } from "../src/engine/products.js";
import { fmt, median } from "./stats.js";

export interface ReferenceResults {
  readonly ok: boolean;
  /** Why the reference did not run (python missing, import failed, ...). */
  readonly reason?: string;
  readonly python: string;
  readonly torch?: string;
  readonly adaptersVersion?: string;
  readonly attnImplementation?: string;
  readonly times: Record<string, number[]>;
  /** shape -> CPU (% of a core) other processes used while it was measured, after retries */
  readonly othersPercent?: Record<string, number>;
  /** The same PyTorch model with no adapter active (backbone alone), for context. */
  readonly plainTimes?: Record<string, number[]>;
  /** The fused model after torch.ao.quantization.quantize_dynamic (int8): int8 targets 1a/1b against int8. */
  readonly int8Times?: Record<string, number[]>;
  readonly int8Engine?: string;
  /** Medians of the pass before the engine level and of the one after it, where both ran (shape -> ms). */
  readonly passes?: { readonly before: Record<string, number>; readonly after: Record<string, number> };
}

/** What bench/reference.py writes. */
export interface ReferenceJson {
  readonly torch: string;
  readonly adapters_version: string;
  readonly attn_implementation: string;
  readonly parity: { batch: number; seq: number; hidden: number[]; logits: number[] };
  readonly shapes: Record<string, number[]>;
  readonly others_percent: Record<string, number>;
  readonly plain_shapes?: Record<string, number[]>;
  readonly int8_shapes?: Record<string, number[]>;
  readonly int8_engine?: string;
}

/** The reference with a second pass's runs pooled in, shape by shape. */
export function withSecondPass(first: ReferenceResults, second: ReferenceJson): ReferenceResults {
  const pool = (a: Record<string, number[]> | undefined, b: Record<string, number[]> | undefined) => {
    const pooled: Record<string, number[]> = { ...a };
    for (const [shape, times] of Object.entries(b ?? {})) pooled[shape] = [...(a?.[shape] ?? []), ...times].sort((x, y) => x - y);
    return pooled;
  };
  const before: Record<string, number> = {};
  const after: Record<string, number> = {};
  for (const shape of Object.keys(second.shapes)) {
    before[shape] = med(first.times, shape);
    after[shape] = med(second.shapes, shape);
  }
  const othersPercent = { ...first.othersPercent };
  for (const [shape, p] of Object.entries(second.others_percent)) othersPercent[shape] = Math.max(p, othersPercent[shape] ?? 0);
  return {
    ...first,
    times: pool(first.times, second.shapes),
    othersPercent,
    plainTimes: pool(first.plainTimes, second.plain_shapes),
    int8Times: pool(first.int8Times, second.int8_shapes),
    passes: { before, after },
  };
}

export interface BenchData {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly seconds: number;
  readonly command: string;
  readonly mode: "full" | "quick";
  readonly machine: string;
  readonly threads: number;
  readonly ortVersion: string;
  readonly busyBefore: readonly BusyProcess[];
  readonly busyAfter: readonly BusyProcess[];
  /** Other processes' CPU use sampled every 2 s through the run. */
  readonly contention: { readonly intervals: number; readonly busyIntervals: number; readonly peakPercent: number; readonly culprits: readonly { command: string; peakPercent: number }[] };
  readonly weights: Record<string, unknown>;
  readonly reference: ReferenceResults;
  readonly engine: EngineResults;
  readonly parity?: { readonly hidden: number; readonly logits: number };
  readonly http: HttpResults | { readonly skipped: string };
  readonly gpu: string;
  readonly plots: { readonly http?: string; readonly byN?: string; readonly note?: string };
}

export interface Target {
  readonly id: string;
  /** The engine's --precision the figure was measured in. */
  readonly precision: Precision;
  readonly what: string;
  readonly figure: number;
  readonly required: string;
  readonly pass: boolean | null; // null: could not be measured
  readonly note?: string;
}

const HEADLINE = "32x64";
/** A measurement during which other processes used at least this share of one core is marked †. */
export const DISTURBED = 25;
const SMALL = "1x16";
/** The shapes targets 1a and 1b compare the engine with the reference at. */
export const TARGET_SHAPES = [SMALL, HEADLINE] as const;

function med(times: Record<string, number[]> | undefined, shape: string): number {
  const t = times?.[shape];
  return t && t.length ? median(t) : Number.NaN;
}

export function computeTargets(d: BenchData): Target[] {
  const e = (c: EngineCase, s: string) => med(d.engine.times[c], s);
  const ref = (s: string) => (d.reference.ok ? med(d.reference.times, s) : Number.NaN);
  const refInt8 = (s: string) => (d.reference.ok ? med(d.reference.int8Times, s) : Number.NaN);
  const check = (v: number, ok: (v: number) => boolean) => (Number.isFinite(v) ? ok(v) : null);
  const refNote = d.reference.ok ? undefined : `reference did not run: ${d.reference.reason}`;
  const int8Note = refNote ?? "torch int8 reference not measured at this shape (reference.py --int8-shapes)";
  const targets: Target[] = [];
  // Targets 1–3 in both precisions; 4 compares against the literal graph, which exists in float32 only.
  for (const precision of ["float32", "int8"] as const) {
    const at = (c: "plain" | "fused2" | "fused5" | "fused8", shape: string) => e(precision === "int8" ? `${c}_int8` : c, shape);
    // The reference is float32 in both blocks; in the int8 block it is also quantized by torch,
    // so that int8 is compared with int8 too and not only with a float32 reference.
    const references = precision === "float32" ? [{ label: "AdapterHub reference", time: ref, note: refNote }] : [
      { label: "AdapterHub reference (float32)", time: ref, note: refNote },
      { label: "AdapterHub reference after torch dynamic int8", time: refInt8, note: int8Note },
    ];
    for (const r of references) {
      const t1a = r.time(HEADLINE) / at("fused5", HEADLINE);
      const t1b = r.time(SMALL) / at("fused5", SMALL);
      const note = (v: number) => (Number.isFinite(v) ? undefined : r.note);
      targets.push(
        { id: "1a", precision, what: `fused N=5 / ${r.label}, throughput at 32×64`, figure: t1a, required: "≥ 3×", pass: check(t1a, (v) => v >= 3), note: note(t1a) },
        { id: "1b", precision, what: `${r.label} / fused N=5, latency at 1×16`, figure: t1b, required: "≥ 2.5×", pass: check(t1b, (v) => v >= 2.5), note: note(t1b) },
      );
    }
    const t2 = at("fused5", HEADLINE) / at("plain", HEADLINE);
    const t3 = at("fused8", HEADLINE) / at("fused2", HEADLINE);
    targets.push(
      { id: "2", precision, what: "fused N=5 / plain backbone, time at 32×64", figure: t2, required: "≤ 1.3×", pass: check(t2, (v) => v <= 1.3) },
      { id: "3", precision, what: "time N=8 / time N=2 (fused), 32×64", figure: t3, required: "≤ 1.15×", pass: check(t3, (v) => v <= 1.15) },
    );
  }
  const t4 = e("literal5", HEADLINE) / e("fused5", HEADLINE);
  targets.push({ id: "4", precision: "float32", what: "literal / rewritten fusion at N=5, time at 32×64", figure: t4, required: "> 1×", pass: check(t4, (v) => v > 1) });
  if ("steps" in d.http) {
    const ratio = d.http.saturationRatio;
    targets.push({
      id: "5",
      precision: "float32",
      what: `HTTP at saturation (c ≥ ${Math.min(...d.http.saturationSteps)}) / engine-only throughput, same tweets (${fmt(d.http.saturationRps)} vs ${fmt(d.http.engineOnly.seqPerSec)} seq/s)`,
      figure: ratio,
      required: "≥ 0.85",
      pass: check(ratio, (v) => v >= 0.85),
    });
  } else {
    targets.push({ id: "5", precision: "float32", what: "HTTP at saturation / engine-only throughput", figure: Number.NaN, required: "≥ 0.85", pass: null, note: d.http.skipped });
  }
  return targets;
}

const verdict = (t: Target) => (t.pass === null ? "NOT RUN" : t.pass ? "PASS" : "MISS");

export function targetLines(targets: readonly Target[]): string[] {
  return targets.map((t) => `${verdict(t).padEnd(7)} target ${t.id.padEnd(2)} ${t.precision.padEnd(7)} ${t.what}: ${fmt(t.figure, 2)} (required ${t.required})${t.note ? ` — ${t.note}` : ""}`);
}

const COLUMNS: { key: EngineCase | "reference"; title: string }[] = [
  { key: "reference", title: "AdapterHub ref N=5" },
  { key: "fused5", title: "fused N=5" },
  { key: "plain", title: "plain" },
  { key: "literal5", title: "literal N=5" },
  { key: "fused1", title: "fused N=1" },
  { key: "fused2", title: "fused N=2" },
  { key: "fused8", title: "fused N=8" },
];

export function renderMarkdown(d: BenchData, targets: readonly Target[]): string {
  const L: string[] = [];
  const timesOf = (k: EngineCase | "reference") => (k === "reference" ? (d.reference.ok ? d.reference.times : undefined) : d.engine.times[k]);
  L.push(`# Benchmark results (${d.mode} run)`, "");
  L.push(`- Started ${d.startedAt}, took ${fmt(d.seconds, 0)} s. Command: \`${d.command}\``);
  L.push(`- Machine: ${d.machine}. Threads: ${d.threads} (ONNX Runtime intraOpNumThreads and torch.set_num_threads alike).`);
  L.push(`- ONNX Runtime (onnxruntime-node) ${d.ortVersion}, CPU execution provider.`);
  L.push(
    d.reference.ok
      ? `- Reference: Python \`adapters\` ${d.reference.adaptersVersion}, torch ${d.reference.torch} (CPU), attention '${d.reference.attnImplementation}', eval + torch.inference_mode, interpreter ${d.reference.python}.`
      : `- Reference: **could not run** (${d.reference.python}): ${d.reference.reason}`,
  );
  L.push(`- Weights: 8 random seq_bn adapters (reduction factor 16) and dynamic fusions N=1,2,5,8 on all-MiniLM-L6-v2, written by the \`adapters\` library (bench/make_weights.py); both sides load the same files.`);
  if (d.parity) {
    L.push(`- Same weights, same result: fused N=5 vs the reference on a 2×16 input, max |diff| ${d.parity.hidden.toExponential(1)} (last hidden state), ${d.parity.logits.toExponential(1)} (logits).`);
  }
  const busy = [...d.busyBefore.map((p) => ({ ...p, when: "before" })), ...d.busyAfter.map((p) => ({ ...p, when: "after" }))];
  const c = d.contention;
  const culprits = c.culprits.map((p) => `\`${p.command}\` ${p.peakPercent}%`).join(", ") || "short-lived processes";
  const around = busy.map((p) => `${p.when} the run: pid ${p.pid} ${p.cpuPercent}% \`${p.command}\``).join("; ");
  L.push(
    busy.length || c.busyIntervals > 0
      ? `- Other processes used the CPU in ${c.busyIntervals} of ${c.intervals} two-second samples during the run (peak ${c.peakPercent}% of a core: ${culprits})${around ? `; ${around}` : ""}. ` +
          "Each measurement they disturbed was waited out and repeated (up to 3 times); what stayed disturbed is marked †" +
          (c.busyIntervals > c.intervals / 10 ? ". **Caveat: a large part of the run was disturbed; read the figures with care.**" : ".")
      : `- No other process used the CPU (≥ 25% of a core) before, during (${c.intervals} two-second samples) or after the run.`,
  );
  L.push(`- GPU: ${d.gpu}`, "");

  L.push("## Targets", "");
  L.push(
    "float32 is the default and reproduces the `adapters` model to 1e-5; int8 is the opt-in `--precision int8` (README: Precision, for what it costs in accuracy). " +
      "Targets 1a and 1b in int8 are given twice: against the float32 reference (what a user switching from AdapterHub to `--precision int8` gets) and against the same reference quantized by torch (int8 against int8). The HTTP level runs the default.",
    "",
  );
  L.push("| # | precision | measure | figure | required | result |", "|---|---|---|---|---|---|");
  for (const t of targets) L.push(`| ${t.id} | ${t.precision} | ${t.what} | ${fmt(t.figure, 2)} | ${t.required} | ${verdict(t)}${t.note ? ` (${t.note})` : ""} |`);
  L.push("");

  L.push("## Engine level, CPU", "");
  L.push("Median of the timed runs after warm-up; every token real (no padding). Cases of one shape are timed in blocks (pause, warm-up, timed runs), in two rounds over the cases so slow drift reaches all alike; strict alternation between ONNX Runtime sessions is avoided because a session's worker threads spin for a while after each run and slow down the next session's run.", "");
  const shapes = d.engine.shapes;
  const label = (s: string) => s.replace("x", " × ");
  L.push("### Latency (ms per batch, median)", "");
  L.push(`| batch × tokens | ${COLUMNS.map((c) => c.title).join(" | ")} | ref / fused | fused / plain | literal / fused | N=8 / N=2 |`);
  L.push(`|---|${COLUMNS.map(() => "---:").join("|")}|---:|---:|---:|---:|`);
  const others = (k: EngineCase | "reference", s: string) =>
    (k === "reference" ? d.reference.othersPercent?.[s] : d.engine.othersPercent?.[k]?.[s]) ?? 0;
  const mark = (k: EngineCase | "reference", s: string) => (others(k, s) >= DISTURBED ? "†" : "");
  let disturbed = 0;
  for (const s of shapes) for (const c of COLUMNS) if (timesOf(c.key)?.[s] && mark(c.key, s)) disturbed++;
  for (const s of shapes) {
    const m = (k: EngineCase | "reference") => med(timesOf(k), s);
    L.push(
      `| ${label(s)} | ${COLUMNS.map((c) => fmt(m(c.key), m(c.key) < 10 ? 2 : 1) + mark(c.key, s)).join(" | ")} | ${fmt(m("reference") / m("fused5"), 2)} | ${fmt(m("fused5") / m("plain"), 2)} | ${fmt(m("literal5") / m("fused5"), 2)} | ${fmt(m("fused8") / m("fused2"), 2)} |`,
    );
  }
  L.push("", "### Throughput (sequences/s)", "");
  L.push(`| batch × tokens | ${COLUMNS.map((c) => c.title).join(" | ")} |`);
  L.push(`|---|${COLUMNS.map(() => "---:").join("|")}|`);
  for (const s of shapes) {
    const b = Number(s.split("x")[0]);
    L.push(`| ${label(s)} | ${COLUMNS.map((c) => fmt((b * 1000) / med(timesOf(c.key), s), 0)).join(" | ")} |`);
  }
  const torchPlain = Object.keys(d.reference.plainTimes ?? {});
  if (d.reference.ok && torchPlain.length) {
    L.push(
      "",
      "For context, PyTorch's own plain backbone (the reference model with no adapter active): " +
        torchPlain
          .map((s) => {
            const t = med(d.reference.plainTimes, s);
            return `${label(s)}: ${fmt(t, t < 10 ? 2 : 1)} ms, ${fmt(t / med(d.engine.times.plain, s), 2)}× this engine's plain backbone; reference N=5 ${fmt(med(d.reference.times, s) / t, 2)}× it`;
          })
          .join("; ") +
        ".",
    );
  }
  if (d.engine.times.fused5_int8 && Object.keys(d.engine.times.fused5_int8).length) {
    const { weightBits, saturatesAt8Bits } = d.engine.int8;
    L.push("", `### --precision int8, ${weightBits}-bit weights (ms per batch, median)`, "");
    L.push(
      `Weights ${weightBits}-bit as chosen on this CPU (${saturatesAt8Bits ? "its u8×s8 kernel saturates on 8-bit weights" : "8-bit products are exact on it"}; CPU flags in the Machine line above; README: Precision).`,
      "",
    );
    L.push("| batch × tokens | AdapterHub ref N=5 | fused N=5 | plain | fused N=2 | fused N=8 | ref / fused | fused / plain | N=8 / N=2 | float32 / int8, fused N=5 |");
    L.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (const s of shapes) {
      const m = (k: EngineCase | "reference") => med(timesOf(k), s);
      const cells = (["reference", "fused5_int8", "plain_int8", "fused2_int8", "fused8_int8"] as const).map((k) => fmt(m(k), m(k) < 10 ? 2 : 1) + mark(k, s));
      L.push(`| ${label(s)} | ${cells.join(" | ")} | ${fmt(m("reference") / m("fused5_int8"), 2)} | ${fmt(m("fused5_int8") / m("plain_int8"), 2)} | ${fmt(m("fused8_int8") / m("fused2_int8"), 2)} | ${fmt(m("fused5") / m("fused5_int8"), 2)} |`);
    }
    const torchInt8 = Object.keys(d.reference.int8Times ?? {});
    if (d.reference.ok && torchInt8.length) {
      L.push(
        "",
        `For an int8-to-int8 comparison, the reference after PyTorch's own dynamic quantization (\`torch.ao.quantization.quantize_dynamic\` on every nn.Linear, engine '${d.reference.int8Engine}'): ` +
          torchInt8
            .map((s) => {
              const t = med(d.reference.int8Times, s);
              return `${label(s)}: ${fmt(t, t < 10 ? 2 : 1)} ms, ${fmt(t / med(d.engine.times.fused5_int8, s), 2)}× this engine's int8 fused N=5`;
            })
            .join("; ") +
          ".",
      );
    }
    L.push("", "Same weights as above, quantized by the engine (bench weights are random, so accuracy is not measured here: test/default-library/int8.test.ts measures it on the trained default library).");
  }
  const passes = d.reference.passes;
  if (passes) {
    L.push(
      "",
      "The reference was timed before the engine level and again after it at the targets' shapes; every reference figure here pools both passes. Medians before / after: " +
        Object.keys(passes.before)
          .map((s) => `${label(s)} ${fmt(passes.before[s], 1)} / ${fmt(passes.after[s], 1)} ms`)
          .join("; ") +
        ".",
    );
  }
  const runs = (k: EngineCase | "reference") => Math.min(...shapes.map((s) => timesOf(k)?.[s]?.length ?? 0));
  L.push("", `Timed runs per cell: engine ≥ ${runs("fused5")}${d.reference.ok ? `, reference ≥ ${runs("reference")}` : ""}.`);
  L.push(
    disturbed
      ? `† ${disturbed} cell(s) measured while other processes used ≥ ${DISTURBED}% of a core even after waiting and measuring again (up to 3 times): read them with care.`
      : `Every cell was measured while no other process used ≥ ${DISTURBED}% of a core (a disturbed measurement is waited out and repeated).`,
    "",
  );

  L.push("## HTTP level", "");
  if ("steps" in d.http) {
    const h = d.http;
    L.push(h.description, "");
    L.push("| concurrency | requests/s | p50 ms | p99 ms | errors | batches | mean batch size | batch sizes (server histogram, count per bucket) | mean pass ms | others' CPU % |");
    L.push("|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    for (const s of h.steps) {
      L.push(`| ${s.concurrency} | ${fmt(s.rps, 1)} | ${fmt(s.p50, 1)} | ${fmt(s.p99, 1)} | ${s.errors} | ${s.batches ?? "n/a"} | ${fmt(s.meanBatch ?? Number.NaN, 1)} | ${s.histogram ?? "n/a"} | ${fmt(s.passMs ?? Number.NaN, 1)} | ${fmt(s.othersPercent, 0)}${s.othersPercent >= DISTURBED ? " †" : ""} |`);
    }
    L.push("", `Engine only, same tweets tokenized with src/engine/tokenizer.ts and batched as the server would at its maximum batch (${h.engineOnly.description}): **${fmt(h.engineOnly.seqPerSec, 1)} sequences/s** (median batch ${fmt(h.engineOnly.medianMs, 1)} ms; others' CPU ${fmt(h.engineOnly.othersPercent, 0)}%${h.engineOnly.othersPercent >= DISTURBED ? " †" : ""}).`);
    L.push(
      `Same tweets, each window of 128 sorted by length before batching (what a length-aware batcher could form from a queue that deep): ` +
        `${fmt(h.engineOnly.sorted.seqPerSec, 1)} sequences/s, mean padded width ${fmt(h.engineOnly.sorted.meanWidth, 1)}.`,
    );
    const best = h.steps.reduce((a, b) => (b.rps > a.rps ? b : a));
    L.push(
      `HTTP at saturation (concurrency ${h.saturationSteps.join(", ")}: a full batch waits while another runs): ${fmt(h.saturationRps, 1)} requests/s = **${fmt(h.saturationRatio * 100, 0)}%** of engine-only. ` +
        `Best step overall: concurrency ${best.concurrency}, ${fmt(best.rps, 1)} requests/s (${fmt((best.rps / h.engineOnly.seqPerSec) * 100, 0)}%).`,
      "",
    );
  } else {
    L.push(`Not run: ${d.http.skipped}`, "");
  }

  L.push("## Plots", "");
  if (d.plots.http) L.push(`![HTTP latency against throughput](${d.plots.http})`, "");
  if (d.plots.byN) L.push(`![Time against number of fused adapters](${d.plots.byN})`, "");
  if (d.plots.note) L.push(d.plots.note, "");
  return L.join("\n") + "\n";
}
