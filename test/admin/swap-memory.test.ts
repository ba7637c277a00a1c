import t from "tap";
import { admin, adminServer, scaleFloats, stage, writableLibrary } from "./admin-library.js";

/** Issue 5, acceptance 5: 200 swap cycles of one adapter leave resident memory within 50 MB of its value after 10. */
const CYCLES = Number(process.env.SWAP_MEMORY_CYCLES ?? 200);
const gc = (globalThis as { gc?: () => void }).gc;

t.test(`resident memory after ${CYCLES} swap cycles stays within 50 MB of its value after 10`, async (t) => {
  const root = await writableLibrary(t);
  const { url } = await adminServer(t, root);
  const versions = [
    await stage(root, "adapters/a1", "m-up", "adapter.safetensors", scaleFloats(1.05)),
    await stage(root, "adapters/a1", "m-down", "adapter.safetensors", scaleFloats(0.95)),
  ];
  const rss = () => {
    gc?.();
    return process.memoryUsage().rss / 2 ** 20;
  };
  let after10 = 0;
  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    for (const path of versions) {
      const answer = await admin(url, "PUT", "/v1/admin/adapters/a1", { path });
      if (answer.status !== 200) t.fail(answer.text);
    }
    if (cycle === 10) after10 = rss();
  }
  const final = rss();
  t.comment(`RSS after 10 cycles ${after10.toFixed(1)} MB, after ${CYCLES} cycles ${final.toFixed(1)} MB (gc ${gc ? "forced" : "not exposed"})`);
  t.ok(final - after10 <= 50, `growth ${(final - after10).toFixed(1)} MB ≤ 50 MB`);
});
