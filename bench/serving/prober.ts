import { request, Agent } from "node:http";
import { performance } from "node:perf_hooks";

/**
 * Probes GET /health from its own process, as a kubelet would: every `interval` ms one probe on a
 * new connection and one on a kept-alive connection, until SIGTERM; then prints the latencies
 * (ms) as one JSON line. Usage: prober.ts <base-url> <interval-ms>
 */
const [base, intervalArg] = process.argv.slice(2);
const interval = Number(intervalArg ?? 100);
const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
const samples = { fresh: [] as number[], kept: [] as number[], failures: 0 };

function probe(agent: Agent | false): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(`${base}/health`, { agent, timeout: 30_000 }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve(performance.now() - started) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

let stopping = false;
process.on("SIGTERM", () => (stopping = true));

while (!stopping) {
  const tick = performance.now();
  const [fresh, kept] = await Promise.allSettled([probe(false), probe(keepAlive)]);
  if (fresh.status === "fulfilled") samples.fresh.push(fresh.value);
  else samples.failures++;
  if (kept.status === "fulfilled") samples.kept.push(kept.value);
  else samples.failures++;
  const rest = interval - (performance.now() - tick);
  if (rest > 0) await new Promise((r) => setTimeout(r, rest));
}
keepAlive.destroy();
process.stdout.write(`${JSON.stringify(samples)}\n`);
