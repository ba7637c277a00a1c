import t from "tap";
import { planPass, type PlanLimits, type Waiting } from "../../src/scheduler/plan.js";

const limits: PlanLimits = { maxBatchSize: 4, maxBatchTokens: 1000, slots: 2, passOverheadTokens: 64 };
const queue = (entries: [string, number][]): Waiting<string>[] => entries.map(([route, length]) => ({ route, length }));

t.test("mixed: the oldest input anchors the pass, joined by the inputs closest to it in length", async (t) => {
  const q = queue([["a", 20], ["a", 90], ["a", 19], ["a", 60], ["a", 22], ["a", 21], ["a", 5]]);
  const plan = planPass(q, limits, "mixed");
  t.same(plan.picked, [0, 2, 5, 4], "20 with 19, 21, 22: little padding; 90, 60 and 5 wait for a pass of their own");
  t.ok(plan.full, "inputs were left out: run now rather than wait");
});

t.test("mixed: routes share a pass up to the slot limit; ties go to the older input", async (t) => {
  const q = queue([["a", 10], ["b", 10], ["c", 10], ["b", 10], ["a", 10]]);
  const plan = planPass(q, limits, "mixed");
  t.same(plan.picked, [0, 1, 3, 4], "a and b fill the two slots; c waits");
  t.ok(plan.full);
});

t.test("mixed: an input whose padding would cost more than a pass of its own waits for one", async (t) => {
  const q = queue([["a", 10], ["a", 11], ["a", 12], ["a", 120]]);
  t.same(planPass(q, limits, "mixed"), { picked: [0, 1, 2], full: true }, "120 would pad the other three tenfold");
  t.same(planPass(q, { ...limits, passOverheadTokens: 100_000 }, "mixed").picked, [0, 1, 2, 3], "unless a pass costs far more than padding");
});

t.test("mixed: the token budget counts padding; the first input always runs", async (t) => {
  const tight = { ...limits, maxBatchTokens: 40 };
  t.same(planPass(queue([["a", 10], ["a", 30], ["a", 12]]), tight, "mixed").picked, [0, 2], "3 × 30 would not fit; 2 × 12 does");
  t.same(planPass(queue([["a", 50], ["a", 5]]), tight, "mixed").picked, [0], "an input over the budget still runs, alone");
  t.same(planPass(queue([["a", 10], ["a", 11]]), tight, "mixed"), { picked: [0, 1], full: false }, "everything fits: not full");
});

t.test("route-fifo: the oldest input's route only, in arrival order, up to the first misfit", async (t) => {
  const q = queue([["a", 10], ["b", 10], ["a", 30], ["a", 5], ["a", 200], ["a", 5]]);
  const plan = planPass(q, { ...limits, maxBatchTokens: 100 }, "route-fifo");
  t.same(plan.picked, [0, 2, 3], "b is skipped; the 200-token input stops the pass");
  t.ok(plan.full);
});

t.test("an empty queue plans nothing", async (t) => {
  t.same(planPass([], limits, "mixed"), { picked: [], full: false });
  t.same(planPass([], limits, "route-fifo"), { picked: [], full: false });
});
