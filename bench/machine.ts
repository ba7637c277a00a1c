import { readdirSync, readFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";

export interface BusyProcess {
  readonly pid: number;
  /** Share of one core used during the sample, in percent. */
  readonly cpuPercent: number;
  readonly command: string;
}

function cpuTicks(): Map<number, number> {
  const out = new Map<number, number>();
  let entries: string[] = [];
  try {
    entries = readdirSync("/proc").filter((e) => /^\d+$/.test(e));
  } catch {
    return out; // not Linux: no sampling
  }
  for (const e of entries) {
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(Number(e), Number(fields[11]) + Number(fields[12])); // utime + stime
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
  return `${availableParallelism()} cores (${c[0]?.model.trim() ?? "?"}), load average ${loadavg().map((v) => v.toFixed(2)).join(" ")}, Node ${process.version}`;
}
