import t from "tap";
import { post } from "../server/harness.js";
import { admin, adminServer, routeVersions, scaleFloats, stage, writableLibrary } from "./admin-library.js";

/**
 * Issue 5, acceptance 1: two routes kept busy over real HTTP while adapters and a fusion are
 * swapped and rolled back. Every answer must be a 200 carrying a version that was live at some
 * moment while the request ran. Durations come from the environment so a quick local run is
 * possible; the defaults are the acceptance figures.
 */
const PHASE_MS = Number(process.env.SWAP_LOAD_SECONDS ?? 60) * 1000;
const WORKERS = 8;
const ROUTES = ["dyn2", "a1"];
const TEXTS = ["short", "a somewhat longer text to predict", "one more input for the load", "x y z"];

interface Sample {
  route: string;
  start: number;
  end: number;
  status: number;
  version: string;
}

/** Keeps WORKERS requests in flight, alternating routes, until `until` returns true. */
async function load(url: string, until: () => boolean): Promise<Sample[]> {
  const samples: Sample[] = [];
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, w) => {
      for (let i = 0; !until(); i++) {
        const route = ROUTES[(w + i) % ROUTES.length];
        const start = performance.now();
        const answer = await post(`${url}/v1/predict/${route}`, { inputs: TEXTS[i % TEXTS.length] });
        samples.push({ route, start, end: performance.now(), status: answer.status, version: answer.body?.version });
      }
    }),
  );
  return samples;
}

function p99(samples: Sample[]): number {
  const sorted = samples.map((s) => s.end - s.start).sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))];
}

t.test("swaps and rollbacks under load: no failed request, every version was live", async (t) => {
  const root = await writableLibrary(t);
  const { url } = await adminServer(t, root);
  const adapterVersions = [
    await stage(root, "adapters/a1", "a1-up", "adapter.safetensors", scaleFloats(1.1)),
    await stage(root, "adapters/a1", "a1-down", "adapter.safetensors", scaleFloats(0.9)),
  ];
  const fusionVersions = [
    await stage(root, "fusions/dyn2", "dyn2-up", "model_adapter_fusion.safetensors", scaleFloats(1.2)),
    await stage(root, "fusions/dyn2", "dyn2-down", "model_adapter_fusion.safetensors", scaleFloats(0.8)),
  ];

  const quiet = performance.now();
  const baseline = await load(url, () => performance.now() - quiet > PHASE_MS);

  // Timeline of the route versions: each entry is live from the start of the call that made it
  // until the end of the call that replaced it.
  const timeline: { from: number; until: number; versions: Record<string, string> }[] = [{ from: 0, until: Infinity, versions: await routeVersions(url) }];
  const plan = [
    ...Array.from({ length: 30 }, () => ({ method: "PUT", path: "/v1/admin/adapters/a1", body: { path: "" } })),
    ...Array.from({ length: 5 }, () => ({ method: "PUT", path: "/v1/admin/fusions/dyn2", body: { path: "" } })),
    ...Array.from({ length: 5 }, (_, i) => ({ method: "POST", path: i % 2 ? "/v1/admin/fusions/dyn2/rollback" : "/v1/admin/adapters/a1/rollback", body: undefined })),
  ];
  // Interleave: fusion swaps and rollbacks spread among the adapter swaps.
  const order = plan.map((_, i) => i).sort((a, b) => (a % 8) - (b % 8) || a - b);
  const busy = performance.now();
  let done = false;
  let adapterPuts = 0;
  let fusionPuts = 0;
  const swapping = (async () => {
    const gap = PHASE_MS / (plan.length + 1);
    for (const index of order) {
      await new Promise((r) => setTimeout(r, gap));
      const step = plan[index];
      // Each PUT brings the version the previous PUT of its kind did not, so every swap changes weights.
      if (step.method === "PUT") step.body = { path: step.path.includes("adapters") ? adapterVersions[adapterPuts++ % 2] : fusionVersions[fusionPuts++ % 2] };
      const from = performance.now();
      const answer = await admin(url, step.method, step.path, step.body);
      t.equal(answer.status, 200, `${step.method} ${step.path}: ${answer.text}`);
      const versions = await routeVersions(url);
      const end = performance.now();
      timeline[timeline.length - 1].until = end;
      timeline.push({ from, until: Infinity, versions });
    }
    done = true;
  })();
  const during = await load(url, () => done && performance.now() - busy > PHASE_MS);
  await swapping;

  const failed = [...baseline, ...during].filter((s) => s.status !== 200);
  t.equal(failed.length, 0, `non-2xx predict answers: ${failed.length}`);
  const stale = during.filter((s) => !timeline.some((e) => e.versions[s.route] === s.version && e.from <= s.end && e.until >= s.start));
  t.equal(stale.length, 0, `answers whose version was not live while they ran: ${stale.length}`);
  const seconds = (performance.now() - busy) / 1000;
  const rate = during.length / seconds;
  t.ok(rate >= 100, `${rate.toFixed(0)} requests/s during the swaps (≥ 100)`);
  t.ok(new Set(during.filter((s) => s.route === "dyn2").map((s) => s.version)).size > 5, "dyn2 answered from many versions");
  t.comment(
    `baseline: ${baseline.length} requests in ${(PHASE_MS / 1000).toFixed(0)} s, p99 ${p99(baseline).toFixed(1)} ms; ` +
      `during ${plan.length} changes: ${during.length} requests in ${seconds.toFixed(0)} s (${rate.toFixed(0)}/s), p99 ${p99(during).toFixed(1)} ms`,
  );
});
