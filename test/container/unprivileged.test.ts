import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { chmod, chown, cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import t, { type Test } from "tap";
import { admin, AUTH, routeVersions } from "../admin/admin-library.js";
import { FIXTURES, scaleFloats, stage, TINY_BACKBONE } from "../fixtures.js";
import { post, request } from "../server/harness.js";

/**
 * The container's admin path: the built server (node dist/main.js, started by the image's entry
 * point) runs as an unprivileged user against a library on a "volume" it owns, laid out as in the
 * image: the image's library (root's, backbone included) seeds the empty volume at first start;
 * then an upload swaps an adapter, a fusion is deleted, a rollback returns, and a new "container"
 * on the same volume serves what was live. Switching user needs root; elsewhere the test is
 * skipped, saying so.
 */
const ROOT = join(import.meta.dirname, "..", "..");
const USER = "nobody";
const TOKEN = AUTH.authorization.replace("Bearer ", "");

const id = (flag: string) => Number(spawnSync("id", [flag, USER], { encoding: "utf8" }).stdout.trim());
const skip =
  process.getuid?.() !== 0
    ? "runs the server as an unprivileged user, which needs root to switch to"
    : spawnSync("setpriv", ["--version"]).status !== 0
      ? "setpriv (util-linux) is not installed"
      : !(id("-u") > 0)
        ? `there is no user '${USER}'`
        : false;

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await chown(path, uid, gid);
  if (!(await stat(path)).isDirectory()) return;
  for (const entry of await readdir(path)) await chownTree(join(path, entry), uid, gid);
}

/**
 * /app of the image, in a temporary folder of its own: package.json, dist/ built by tsc, the entry
 * point, the packages the server needs at run time and the node binary running this test. Nothing
 * of it is read from the checkout, which the unprivileged user may not be able to reach (a clone
 * under a 0700 folder, as /root is).
 */
async function buildApp(): Promise<string> {
  const app = await mkdtemp(join(tmpdir(), "container-app-"));
  t.teardown(() => rm(app, { recursive: true, force: true }));
  const tsc = spawn(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", ROOT, "--outDir", join(app, "dist")], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  tsc.stdout.on("data", (chunk) => (output += chunk));
  tsc.stderr.on("data", (chunk) => (output += chunk));
  const [code] = await once(tsc, "exit");
  if (code !== 0) throw new Error(`npm run build failed:\n${output}`);
  await cp(join(ROOT, "package.json"), join(app, "package.json"));
  await mkdir(join(app, "scripts"));
  await cp(join(ROOT, "scripts", "docker-entrypoint.sh"), join(app, "scripts", "docker-entrypoint.sh"));
  for (const pkg of await runtimePackages()) {
    await mkdir(dirname(join(app, pkg)), { recursive: true });
    linkOrCopy(join(ROOT, pkg), join(app, pkg));
  }
  await mkdir(join(app, "bin"));
  linkOrCopy(process.execPath, join(app, "bin", "node"));
  await chmod(app, 0o755);
  return app;
}

/** The top-level node_modules folders package-lock.json installs for production (not dev only). */
async function runtimePackages(): Promise<string[]> {
  const lock = JSON.parse(await readFile(join(ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, { dev?: boolean }> };
  return Object.entries(lock.packages)
    .filter(([path, entry]) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path) && !entry.dev)
    .map(([path]) => path);
}

/** Hard links where the temporary folder shares the checkout's file system (fast), a copy where not. */
function linkOrCopy(from: string, to: string): void {
  for (const flags of ["-al", "-a"]) {
    if (spawnSync("cp", [flags, from, to]).status === 0) return;
    rmSync(to, { recursive: true, force: true });
  }
  throw new Error(`could not copy ${from} to ${to}`);
}

/** /app/models of the image: the tiny library with its backbone under backbones/, owned by root. */
async function imageLibrary(t: Test): Promise<string> {
  const models = await mkdtemp(join(tmpdir(), "image-models-"));
  t.teardown(() => rm(models, { recursive: true, force: true }));
  await cp(join(FIXTURES, "tiny-library"), models, { recursive: true, dereference: true });
  await cp(TINY_BACKBONE, join(models, "backbones", "tiny"), { recursive: true });
  const manifest = JSON.parse(await readFile(join(models, "library.json"), "utf8"));
  await writeFile(join(models, "library.json"), JSON.stringify({ ...manifest, backbone: "backbones/tiny" }, null, 2));
  await chmod(models, 0o755);
  return models;
}

/**
 * The command prefix that runs what follows as the unprivileged user. tap's process tracking puts
 * its own loader, from the checkout, into every child's NODE_OPTIONS; the user may not be able to
 * read it, and the image's server runs without it.
 */
const asUser = ["-u", "NODE_OPTIONS", "setpriv"];

/** The app's own node first: the one running this test may lie where the user cannot reach it. */
const userPath = (app: string) => `${join(app, "bin")}:${process.env.PATH}`;

let built: Promise<string> | undefined;
/** Built once for both tests. */
const appFolder = () => (built ??= buildApp());

interface Container {
  url: string;
  stderr: () => string;
  stop: () => Promise<number | null>;
}

/** One container start: the entry point as the unprivileged user, on the given volume. */
async function startContainer(t: Test, app: string, seed: string, volume: string): Promise<Container> {
  const child = spawn(
    "env",
    [...asUser, `--reuid=${id("-u")}`, `--regid=${id("-g")}`, "--clear-groups", "--", "/bin/sh", join(app, "scripts", "docker-entrypoint.sh"), "--threads", "1"],
    {
      cwd: app,
      env: { PATH: userPath(app), HOST: "127.0.0.1", PORT: "0", FUSION_LIBRARY: volume, FUSION_SEED_LIBRARY: seed, ADMIN_TOKEN: TOKEN },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  t.teardown(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = once(child, "exit");
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not load its library in 60 s; stderr:\n${stderr}`)), 60_000);
    let listening = "";
    createInterface({ input: child.stdout }).on("line", (line) => {
      const { msg } = JSON.parse(line) as { msg: string };
      if (msg.startsWith("Server listening at ")) listening = msg.replace("Server listening at ", "");
      if (msg === "model library loaded") {
        clearTimeout(timer);
        resolve(listening);
      }
    });
    void exited.then(([code]) => reject(new Error(`the server exited with ${code}; stderr:\n${stderr}`)));
  });
  return {
    url,
    stderr: () => stderr,
    stop: async () => {
      child.kill("SIGTERM");
      return (await exited)[0];
    },
  };
}

t.test("as an unprivileged user on a volume it owns: seed, swap, delete, roll back, restart", { skip, timeout: 240_000 }, async (t) => {
  const uid = id("-u");
  const app = await appFolder();
  const seed = await imageLibrary(t);
  const volume = await mkdtemp(join(tmpdir(), "library-volume-"));
  t.teardown(() => rm(volume, { recursive: true, force: true }));
  await chownTree(volume, uid, id("-g"));

  const first = await startContainer(t, app, seed, volume);
  t.match(first.stderr(), /copying the default library/, "the empty volume is seeded from the image's library");
  t.equal((await stat(join(volume, "library.json"))).uid, uid, "the seeded manifest belongs to the server's user");
  t.equal((await request(`${first.url}/ready`)).status, 200);
  const original = await routeVersions(first.url);
  t.ok(original.a1 && original.static5, `the seed's routes are served (${Object.keys(original).length})`);

  const scratch = await mkdtemp(join(tmpdir(), "upload-"));
  t.teardown(() => rm(scratch, { recursive: true, force: true }));
  const staged = join(scratch, await stage(scratch, "adapters/a1", "a1-v2", "adapter.safetensors", scaleFloats(1.2)));
  const form = new FormData();
  for (const file of ["adapter_config.json", "adapter.safetensors", "head_config.json", "model_head.safetensors"]) {
    form.append(file, new Blob([await readFile(join(staged, file))]), file);
  }
  const swap = await request(`${first.url}/v1/admin/adapters/a1`, { method: "PUT", headers: AUTH, body: form });
  t.equal(swap.status, 200, `PUT adapter: ${swap.text}`);
  t.equal((await stat(join(volume, "adapters", "a1", "2"))).uid, uid, "the new version folder belongs to the server's user");
  const swapped = await routeVersions(first.url);
  t.not(swapped.a1, original.a1, "the adapter was swapped");
  t.not(swapped.dyn2, original.dyn2, "and the fusion route using it follows");

  const deleted = await admin(first.url, "DELETE", "/v1/admin/fusions/static5");
  t.equal(deleted.status, 200, `DELETE fusion: ${deleted.text}`);
  const rollback = await admin(first.url, "POST", "/v1/admin/adapters/a1/rollback");
  t.equal(rollback.status, 200, `rollback: ${rollback.text}`);
  const live = await routeVersions(first.url);
  t.equal(live.a1, original.a1, "the rollback returns to the seeded adapter");
  t.equal(live.static5, undefined, "the deleted route is gone");
  const answer = (await post(`${first.url}/v1/predict/dyn2`, { inputs: "probe", raw_scores: true })).text;
  t.equal(await first.stop(), 0, "SIGTERM: exit 0");

  const second = await startContainer(t, app, seed, volume);
  t.notMatch(second.stderr(), /copying/, "a volume that holds a library is not seeded again");
  t.same(await routeVersions(second.url), live, "a new container on the volume serves what was live");
  t.equal((await post(`${second.url}/v1/predict/dyn2`, { inputs: "probe", raw_scores: true })).text, answer, "and answers the same");
  const forward = await admin(second.url, "POST", "/v1/admin/adapters/a1/rollback");
  t.equal(forward.status, 200, `rollback again (forward) after the restart: ${forward.text}`);
  t.equal((await routeVersions(second.url)).a1, swapped.a1, "back to the uploaded version");
  t.equal(await second.stop(), 0);
});

t.test("a library folder the server's user cannot write stops the entry point with one clear line", { skip }, async (t) => {
  const app = await appFolder();
  const seed = await imageLibrary(t);
  const child = spawnSync("env", [...asUser, `--reuid=${id("-u")}`, `--regid=${id("-g")}`, "--clear-groups", "--", "/bin/sh", join(app, "scripts", "docker-entrypoint.sh")], {
    env: { PATH: userPath(app), FUSION_LIBRARY: seed, FUSION_SEED_LIBRARY: seed },
    encoding: "utf8",
  });
  t.not(child.status, 0);
  t.match(child.stderr.trim(), /^fusion-serve: the library folder .* is not writable by user \d+:\d+; mount a volume it owns/, child.stderr);
});
