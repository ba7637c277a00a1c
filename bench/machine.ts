import { readdirSync, readFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";

export interface BusyProcess {
  readonly pid: number;
  /** Share of one core used during the sample, in percent. */
  readonly cpuPercent: number;
  readonly command: string;
}

interface ProcSample {
  readonly ticks: number;
  readonly ppid: number;
}

function cpuTicks(): Map<number, number> {
  return new Map([...procSamples()].map(([pid, s]) => [pid, s.ticks]));
}

function procSamples(): Map<number, ProcSample> {
  const out = new Map<number, ProcSample>();
  let entries: string[];
  try {
    entries = readdirSync("/proc").filter((e) => /^\d+$/.test(e));
  } catch {
    return out; // not Linux: no sampling
  }
  for (const e of entries) {
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(Number(e), { ticks: Number(fields[11]) + Number(fields[12]), ppid: Number(fields[1]) }); // utime + stime
    } catch {
      // process ended meanwhile
    }
  }
  return out;
}

/**
 * Other processes that keep a CPU busy (over `threshold` % of one core during `ms`). On a
 * 2-core machine, any of them makes the timings wrong; the report names them.
 */
export async function busyProcesses(ms = 1000, threshold = 15, exclude: readonly number[] = [process.pid]): Promise<BusyProcess[]> {
  const before = cpuTicks();
  await new Promise((r) => setTimeout(r, ms));
  const after = cpuTicks();
  const hz = 100; // USER_HZ on Linux
  const busy: BusyProcess[] = [];
  for (const [pid, ticks] of after) {
    if (exclude.includes(pid)) continue;
    const pct = ((ticks - (before.get(pid) ?? ticks)) / hz / (ms / 1000)) * 100;
    if (pct < threshold) continue;
    let command = "?";
    try {
      command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim().slice(0, 120);
    } catch {
      // gone
    }
    busy.push({ pid, cpuPercent: Math.round(pct), command });
  }
  return busy.sort((a, b) => b.cpuPercent - a.cpuPercent);
}

export function machineLine(): string {
  const c = cpus();
  return `${availableParallelism()} cores (${c[0]?.model.trim() ?? "?"}; ${int8Features()}), load average ${loadavg().map((v) => v.toFixed(2)).join(" ")}, Node ${process.version}`;
}

/** The CPU flags that decide ONNX Runtime's int8 kernel (src/engine/int8-mode.ts). */
function int8Features(): string {
  try {
    const flags = new Set(/^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1].trim().split(/\s+/));
    const present = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"].filter((f) => flags.has(f));
    return `int8-relevant flags: ${present.join(" ") || "none of avx2, avx512f, avx512_vnni, avx_vnni, amx_int8"}`;
  } catch {
    return "CPU flags unknown (no /proc/cpuinfo)";
  }
}

/**
 * Samples, during the whole run, how much CPU processes outside this one's process tree use
 * (the reference and the server are children, so they do not count). A 2-core machine shared
 * with a training job or a test suite gives wrong timings; the report says when that happened.
 */
export class CpuMonitor {
  private last = procSamples();
  private lastAt = performance.now();
  private readonly timer: NodeJS.Timeout;
  intervals = 0;
  busyIntervals = 0;
  peakPercent = 0;
  readonly culprits = new Map<string, number>(); // command -> peak %

  constructor(
    private readonly threshold = 25,
    periodMs = 2000,
  ) {
    this.timer = setInterval(() => this.sample(), periodMs);
    this.timer.unref();
  }

  private sample(): void {
    const now = procSamples();
    const at = performance.now();
    const seconds = (at - this.lastAt) / 1000;
    const ours = ourTree(now);
    let others = 0;
    const heavy: [number, number][] = [];
    for (const [pid, s] of now) {
      if (ours.has(pid)) continue;
      const pct = ((s.ticks - (this.last.get(pid)?.ticks ?? s.ticks)) / 100 / seconds) * 100;
      others += pct;
      if (pct >= this.threshold) heavy.push([pid, pct]);
    }
    this.intervals++;
    if (others >= this.threshold) {
      this.busyIntervals++;
      this.peakPercent = Math.max(this.peakPercent, others);
      for (const [pid, pct] of heavy) {
        let command = "?";
        try {
          command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim().slice(0, 80);
        } catch {
          // gone
        }
        this.culprits.set(command, Math.max(this.culprits.get(command) ?? 0, Math.round(pct)));
      }
    }
    this.last = now;
    this.lastAt = at;
  }

  stop(): { intervals: number; busyIntervals: number; peakPercent: number; culprits: { command: string; peakPercent: number }[] } {
    clearInterval(this.timer);
    return {
      intervals: this.intervals,
      busyIntervals: this.busyIntervals,
      peakPercent: Math.round(this.peakPercent),
      culprits: [...this.culprits].map(([command, peakPercent]) => ({ command, peakPercent })).slice(0, 8),
    };
  }
}

/** Pids of this process and all its descendants, from a /proc snapshot. */
function ourTree(samples: Map<number, ProcSample>): Set<number> {
  const ours = new Set([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, s] of samples) {
      if (!ours.has(pid) && ours.has(s.ppid)) {
        ours.add(pid);
        grew = true;
      }
    }
  }
  return ours;
}

/**
 * Starts measuring the CPU used by processes outside this process tree; the returned function
 * stops and gives their use in percent of one core over the interval.
 */
export function othersProbe(): () => number {
  const before = procSamples();
  const busyBefore = systemBusyTicks();
  const reapedBefore = reapedChildTicks();
  const t0 = performance.now();
  return () => {
    const after = procSamples();
    const busy = systemBusyTicks() - busyBefore;
    const seconds = (performance.now() - t0) / 1000;
    // Everything the CPUs did, minus what this process tree did: live members (new ones from 0)
    // plus the children that ended and were reaped meanwhile. Counting from the system total also
    // catches short-lived processes (compilers, test workers) that a per-process scan misses.
    let ours = reapedChildTicks() - reapedBefore;
    for (const pid of ourTree(after)) ours += after.get(pid)!.ticks - (before.get(pid)?.ticks ?? 0);
    const others = Math.max(0, busy - ours);
    return seconds > 0 ? (others / 100 / seconds) * 100 : 0;
  };
}

/** Busy ticks of all CPUs together (user, nice, system, irq, softirq) from /proc/stat. */
function systemBusyTicks(): number {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    return f[0] + f[1] + f[2] + f[5] + f[6];
  } catch {
    return 0;
  }
}

/** cutime + cstime of this process: CPU of its children that have ended. */
function reapedChildTicks(): number {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[13]) + Number(fields[14]);
  } catch {
    return 0;
  }
}

/** Waits until other processes use less than `threshold` % of a core for 2 s in a row (at most `maxMs`). */
export async function waitForQuiet(threshold: number, maxMs: number): Promise<boolean> {
  const deadline = Date.now() + maxMs;
  while (Date.now() < deadline) {
    const stop = othersProbe();
    await new Promise((r) => setTimeout(r, 2000));
    if (stop() < threshold) return true;
  }
  return false;
}

/**
 * Guards a measurement against other processes: runs it, and when others used the CPU meanwhile
 * (≥ threshold % of a core), waits for a quiet machine and measures again, up to `retries` times.
 * Returns the last measurement and how much CPU the others used during it.
 */
export async function guarded<T>(
  what: string,
  measure: () => Promise<T>,
  opts: { threshold: number; retries: number; log: (line: string) => void },
): Promise<{ value: T; othersPercent: number }> {
  for (let attempt = 0; ; attempt++) {
    const stop = othersProbe();
    const value = await measure();
    const othersPercent = stop();
    if (othersPercent < opts.threshold || attempt >= opts.retries) return { value, othersPercent };
    opts.log(`  ${what}: other processes used ${othersPercent.toFixed(0)}% of a core meanwhile; waiting for a quiet machine to measure again`);
    await waitForQuiet(opts.threshold, 90_000);
  }
}
