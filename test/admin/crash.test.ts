import { spawn } from "node:child_process";
import { once } from "node:events";
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { createInterface } from "node:readline";
import t from "tap";
import { loadBackbone } from "../../src/engine/backbone.js";
import { loadAdapter } from "../../src/library/adapterhub.js";
import { TINY_BACKBONE } from "../fixtures.js";
import { request } from "../server/harness.js";
import { admin, adminServer, scaleFloats, stage, TOKEN, writableLibrary } from "./admin-library.js";

const ROOT = join(import.meta.dirname, "..", "..");
const backbone = await loadBackbone(TINY_BACKBONE);

/** Starts the real server in a child process with the store's crash hook set to `step`; resolves once it serves. */
async function crashingServer(t: { teardown(fn: () => unknown): void }, library: string, step: string, args: string[] = []) {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", "--library", library, "--port", "0", "--threads", "1", ...args], {
    cwd: ROOT,
    env: { ...process.env, ADMIN_TOKEN: TOKEN, FUSION_TEST_CRASH_AT: step },
    stdio: ["ignore", "pipe", "inherit"],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  let url = "";
  for await (const line of createInterface({ input: child.stdout })) {
    const log = JSON.parse(line) as { msg: string };
    if (log.msg.startsWith("Server listening at")) url = log.msg.replace("Server listening at ", "");
    if (log.msg === "model library loaded") break;
  }
  child.stdout.resume();
  return { url, exited };
}

/** Every path under the library, folders marked with a trailing slash. */
async function tree(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.map((e) => relative(root, join(e.parentPath, e.name)) + (e.isDirectory() ? "/" : "")).sort();
}

/** What the restarted server serves of adapter a1. */
async function served(url: string, name: string): Promise<string | undefined> {
  return (await admin(url, "GET", "/v1/admin/adapters")).body.find((a: { name: string }) => a.name === name)?.version;
}

async function uploadForm(dir: string): Promise<FormData> {
  const form = new FormData();
  for (const file of await readdir(dir)) form.append(file, new Blob([await readFile(join(dir, file))]), file);
  return form;
}

// Each step of a PUT, in order: a kill -9 before the manifest's rename must leave the old version
// served, one after it the new one; either way a restart leaves nothing behind.
// With --keep-versions 2, the last step prunes folder 1 (the change before it made folder 2).
const steps = [
  { step: "version-copied", after: "old", folders: ["1"] },
  { step: "version-renamed", after: "old", folders: ["1"] },
  { step: "manifest-written", after: "old", folders: ["1"] },
  { step: "manifest-renamed", after: "new", folders: ["1", "2"] },
  { step: "version-pruning", after: "new", folders: ["2", "3"] },
] as const;

for (const { step, after, folders } of steps) {
  t.test(`kill -9 at ${step} during an uploaded PUT: a restart serves the ${after} version and no leftover remains`, { timeout: 120_000 }, async (t) => {
    const root = await writableLibrary(t);
    const staged = join(root, await stage(root, "adapters/a1", "retrained", "adapter.safetensors", scaleFloats(1.4)));
    const newVersion = (await loadAdapter(staged, backbone.config)).version;
    if (step === "version-pruning") {
      // Two earlier versions, so that the crashing change, with --keep-versions 2, prunes one.
      const first = await adminServer(t, root);
      await admin(first.url, "PUT", "/v1/admin/adapters/a1", { path: await stage(root, "adapters/a1", "earlier", "adapter.safetensors", scaleFloats(0.9)) });
      await first.app.close();
    }
    const before = await tree(root);
    const oldVersion = (await loadAdapter(join(root, "adapters", "a1", before.includes("adapters/a1/2/") ? "2" : "1"), backbone.config)).version;

    const { url, exited } = await crashingServer(t, root, step, ["--keep-versions", "2"]);
    const answer = await request(`${url}/v1/admin/adapters/a1`, { method: "PUT", headers: { authorization: `Bearer ${TOKEN}` }, body: await uploadForm(staged) }).then(
      (a) => `status ${a.status}`,
      () => "no answer",
    );
    t.equal(answer, "no answer", "the change was never acknowledged");
    t.same(await exited, [null, "SIGKILL"], "the server was killed at the step");
    const leftover = (await tree(root)).filter((p) => !before.includes(p) && !/^adapters\/a1\/\d+\/./.test(p) && !/^\.uploads\/.+\/./.test(p));
    t.ok(leftover.length > 0, `the killed change left ${leftover.join(", ")}`);

    const restarted = await adminServer(t, root);
    t.equal(await served(restarted.url, "a1"), after === "old" ? oldVersion : newVersion, `a1 serves the ${after} version`);
    const left = await tree(root);
    t.same(left.filter((p) => /\.partial|\.removing|\.uploads/.test(p)), [], "no staging folder, staged manifest or upload remains");
    const outside = (paths: string[]) => paths.filter((p) => !p.startsWith("adapters/a1/"));
    t.same(outside(left), outside(before), "nothing else in the library changed");
    t.same((await readdir(join(root, "adapters", "a1"))).sort(), folders, `a1's version folders: ${folders.join(", ")}`);
  });
}

t.test("kill -9 between a DELETE's manifest and its files: a restart serves without the module and removes its folder", { timeout: 120_000 }, async (t) => {
  const root = await writableLibrary(t);
  const { url, exited } = await crashingServer(t, root, "manifest-renamed");
  const answer = await admin(url, "DELETE", "/v1/admin/fusions/dyn5").then(
    (a) => `status ${a.status}`,
    () => "no answer",
  );
  t.equal(answer, "no answer", "the change was never acknowledged");
  t.same(await exited, [null, "SIGKILL"], "the server was killed at the step");
  t.ok((await tree(root)).includes("fusions/dyn5/"), "the killed change left the folder");
  const restarted = await adminServer(t, root);
  t.equal((await request(`${restarted.url}/v1/fusions`)).body.fusions.some((f: { name: string }) => f.name === "dyn5"), false, "dyn5 is not served");
  t.notOk((await tree(root)).some((p) => p.startsWith("fusions/dyn5")), "the deleted fusion's folder is gone");
});
