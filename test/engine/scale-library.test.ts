import { readFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import { generate, PAPER_LIBRARY, plannedLibrary, rule, SCALE_FIXTURES, seedOf, type PlannedFile } from "../fixtures/scale-library.js";

/**
 * The TypeScript generator of the scale library is the one of python/fixtures/make_scale_fixtures.py:
 * the same seeds and bit patterns, and for the library the references were computed on, the same
 * files, tensors, shapes, value ranges and configs as `adapters` saved.
 */
interface Sample {
  module: string;
  name: string;
  shape: number[];
  seed: number;
  values: Record<string, string>;
}

const samples: Sample[] = JSON.parse(readFileSync(join(SCALE_FIXTURES, "generator-samples.json"), "utf8"));

t.test("generated values equal Python's bit for bit", async (t) => {
  for (const s of samples) {
    t.equal(seedOf(`${s.module}/${s.name}`), s.seed, `seed of ${s.module}/${s.name}`);
    const values = generate(s.module, s.name, s.shape);
    const bits = new Uint32Array(values.buffer);
    for (const [index, hex] of Object.entries(s.values)) {
      t.equal(bits[Number(index)].toString(16).padStart(8, "0"), hex, `${s.name}[${index}]`);
    }
  }
});

t.test("the planned paper library holds the files, tensors and configs adapters saved", async (t) => {
  // Parsed plainly, as numbers: what the planned library's values must equal.
  const committed: { configs: Record<string, unknown>; files: Record<string, { module: string; tensors: unknown[] }> } = JSON.parse(
    readFileSync(join(SCALE_FIXTURES, "library.json"), "utf8"),
  );
  const planned = plannedLibrary(PAPER_LIBRARY);
  const plannedTensorFiles = Object.keys(planned).filter((p) => p.endsWith(".safetensors")).sort();
  t.strictSame(plannedTensorFiles, Object.keys(committed.files).sort(), "the same tensor files");
  for (const [path, file] of Object.entries(committed.files)) {
    const plan = planned[path] as PlannedFile;
    t.equal(plan.module, file.module, `${path}: module`);
    t.strictSame(
      plan.tensors.map((x) => ({ ...x, rule: rule(x.name) })),
      file.tensors,
      `${path}: names, dtypes, shapes and value ranges in file order`,
    );
  }
  for (const [path, config] of Object.entries(committed.configs)) t.strictSame(JSON.parse(JSON.stringify(planned[path])), config, path);
  // `adapters` refuses an integer scaling: floats must be written as floats.
  t.match(JSON.stringify(planned["adapters/a00/1/adapter_config.json"]), /"scaling":1\.0,/, "scaling written as 1.0");
});
