import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { resolvePython, runPython } from "../../bench/python.js";
import { maxAbsDiff, TINY_BACKBONE } from "../fixtures.js";
import { writableLibrary } from "../admin/admin-library.js";
import { post, request } from "../server/harness.js";
import { cli, ROOT, serve } from "./cli-process.js";

/**
 * The README's walkthrough "From an adapters save dir to a served route", as it is written there:
 * its Python script (taken from the README itself) trains a small adapter and its head with the
 * `adapters` library on the library's backbone and saves them with save_adapter; fusion-serve
 * pushes the save directory into a server started with fusion-serve serve; the new route answers
 * with the probabilities the script printed from the trained model. The server runs on the tiny
 * test library (the README's on models/), on a free port (the README's on the default one).
 * Python is $PYTHON, else .venv/bin/python, else python3; without `adapters` the test is skipped,
 * saying so.
 */
const SECTION = "## From an adapters save dir to a served route";
const SCRIPT = "save_polite.py";
const NAME = "polite";
const TEXTS = ["thank you so much, that was kind", "go away, nobody asked you", "much appreciated, have a nice day", "shut up and leave"];

const python = resolvePython(ROOT);
const found = spawnSync(python, ["-c", "import adapters, torch, transformers"], { stdio: "ignore" });
const skip =
  found.status === 0 ? false : `no Python with the adapters library (tried '${python}'): set PYTHON to an interpreter with python/requirements.txt installed to run the walkthrough`;

/** The walkthrough's section of the README, up to the next section. */
async function walkthrough(): Promise<string> {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf(`\n${SECTION}\n`);
  if (start < 0) throw new Error(`README.md has no section '${SECTION}'`);
  const end = readme.indexOf("\n## ", start + SECTION.length + 2);
  return readme.slice(start, end < 0 ? undefined : end);
}

t.test("the README's walkthrough: a save dir written by adapters is pushed with fusion-serve and served as it was trained", { skip, timeout: 300_000 }, async (t) => {
  const section = await walkthrough();
  const script = /```python\n([^]*?)```/.exec(section)?.[1];
  if (script === undefined) throw new Error(`the section '${SECTION}' has no python block`);
  t.match(script, `texts = ${JSON.stringify(TEXTS).replaceAll('","', '", "')}`, "the script trains on the texts predicted below");
  for (const step of [`python3 ${SCRIPT} models/backbones/all-MiniLM-L6-v2 ${NAME}`, `npx fusion-serve push ${NAME} --name ${NAME}`, "npx fusion-serve list"]) {
    t.match(section, step, `the README runs: ${step}`);
  }

  const work = await mkdtemp(join(tmpdir(), "walkthrough-"));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  await writeFile(join(work, SCRIPT), script);
  const server = await serve(t, ["--library", await writableLibrary(t), "--port", "0", "--threads", "1"]);

  // The tiny library's backbone, where the README names the default library's.
  const trained = await runPython(python, [SCRIPT, TINY_BACKBONE, NAME], work, (line) => t.comment(line));
  t.ok(trained.ok, trained.ok ? "the script ran" : `the script failed:\n${trained.errorTail}`);
  const probabilities: number[][] = JSON.parse(trained.stdout.trim().split("\n").at(-1)!);

  const push = await cli(["push", join(work, NAME), "--name", NAME, "--url", server.url]);
  t.equal(push.code, 0, `pushed (${push.stderr})`);
  t.match(push.stdout, new RegExp(`^adapter '${NAME}' is live at version [0-9a-f]{12} \\(folder 1; no previous version to roll back to\\)\\nroutes changed: ${NAME}\\n$`), push.stdout);
  const list = await cli(["list", "--url", server.url]);
  t.equal(list.code, 0, `listed (${list.stderr})`);
  t.match(list.stdout, new RegExp(`\\n {2}${NAME} +[0-9a-f]{12} +1 +- +[\\d.]+ KiB +${NAME}\\n`), "list shows the adapter and its route");

  const route = (await request(`${server.url}/v1/fusions`)).body.fusions.find((f: { name: string }) => f.name === NAME);
  t.same(route.labels, ["polite", "rude"], "the labels of the head's id2label");
  const answer = await post(`${server.url}/v1/predict/${NAME}`, { inputs: TEXTS });
  t.equal(answer.status, 200, answer.text);
  const served = answer.body.predictions.map((p: { scores: Record<string, number> }) => [p.scores.polite, p.scores.rude]);
  const diff = maxAbsDiff(served.flat(), probabilities.flat());
  t.ok(diff <= 1e-5, `the served probabilities are those of the trained model in adapters (max |difference| ${diff.toExponential(2)})`);
});
