import t from "tap";
import { packBatch, placeInRows } from "../../src/engine/packing.js";
import { planPass, type PlanLimits, type Waiting } from "../../src/scheduler/plan.js";

const limits: PlanLimits = { maxBatchSize: 4, maxBatchTokens: 1000, slots: 2, directSlots: 1 };
const queue = (entries: [string, number][]): Waiting<string>[] => entries.map(([route, length]) => ({ route, length }));

t.test("mixed: inputs in arrival order, whatever their lengths, packed several to a row", async (t) => {
  const q = queue([["a", 20], ["a", 90], ["a", 19], ["a", 60], ["a", 22], ["a", 5]]);
  const plan = planPass(q, limits, "mixed");
  t.same(plan, { picked: [0, 1, 2, 3], full: true, packed: true }, "the four oldest; the rest wait for the next pass");
  t.same(placeInRows([20, 90, 19, 60], 90).rows, 3, "90 | 60 + 20 | 19: 3 rows of 90 where one input per row would take 4");
});

t.test("mixed: routes share a pass up to the slot limit; an input of one more route waits, younger ones of the pass's routes go ahead", async (t) => {
  const q = queue([["a", 10], ["b", 10], ["c", 10], ["b", 10], ["a", 10]]);
  t.same(planPass(q, limits, "mixed"), { picked: [0, 1, 3, 4], full: true, packed: true }, "a and b fill the two slots; c waits");
});

t.test("mixed: routes served unfolded take the direct slots, resident ones the others; each kind waits only for its own slots", async (t) => {
  const resident = (route: string) => route === "a" || route === "b" || route === "c";
  const wide = { ...limits, maxBatchSize: 8 };
  const q = queue([["x", 10], ["a", 10], ["y", 10], ["b", 10], ["c", 10], ["x", 10], ["a", 10]]);
  t.same(planPass(q, wide, "mixed", resident), { picked: [0, 1, 3, 5, 6], full: true, packed: true }, "x in the direct slot, a and b in the two others; y and c wait");
  t.same(planPass(queue([["x", 10], ["y", 10], ["z", 10]]), wide, "mixed").picked, [0, 1], "by default every route counts as resident: two slots, the third route waits");
});

t.test("mixed: the token budget counts packed rows × the longest input; the oldest input always runs", async (t) => {
  const tight = { ...limits, maxBatchTokens: 60 };
  t.same(planPass(queue([["a", 30], ["a", 25], ["a", 30], ["a", 5]]), tight, "mixed").picked, [0, 1, 3], "30 | 25 + 5 fits 2 rows of 30; a third 30 would need a third row");
  t.same(planPass(queue([["a", 80], ["a", 5]]), tight, "mixed").picked, [0], "an input over the budget still runs, alone");
  t.same(planPass(queue([["a", 10], ["b", 11]]), tight, "mixed"), { picked: [0, 1], full: false, packed: true }, "everything fits: not full");
});

t.test("packed rows keep each input whole; segments in input order", async (t) => {
  const batch = packBatch([[7, 7, 7], [8], [9, 9], [5, 5]]);
  t.same(batch.segments, [{ row: 0, offset: 0, length: 3 }, { row: 1, offset: 2, length: 1 }, { row: 1, offset: 0, length: 2 }, { row: 2, offset: 0, length: 2 }]);
  t.same([...batch.ids].map(Number), [7, 7, 7, 9, 9, 8, 5, 5, 0]);
  t.same([...batch.mask].map(Number), [1, 1, 1, 1, 1, 1, 1, 1, 0]);
  t.same(batch.lengths, [3, 1, 2, 2], "lengths in input order");
});

t.test("route-fifo: the oldest input's route only, in arrival order, one per row, up to the first misfit", async (t) => {
  const q = queue([["a", 10], ["b", 10], ["a", 30], ["a", 5], ["a", 200], ["a", 5]]);
  t.same(planPass(q, { ...limits, maxBatchTokens: 100 }, "route-fifo"), { picked: [0, 2, 3], full: true, packed: false }, "b is skipped; the 200-token input stops the pass");
});

t.test("an empty queue plans nothing", async (t) => {
  t.same(planPass([], limits, "mixed"), { picked: [], full: false, packed: true });
  t.same(planPass([], limits, "route-fifo"), { picked: [], full: false, packed: false });
});
