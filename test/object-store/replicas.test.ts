import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import t from "tap";
import { assertError } from "../error-shape.js";
import { scaleFloats, stage } from "../fixtures.js";
import { AUTH, TOKEN } from "../admin/admin-library.js";
import { request, type Answer } from "../server/harness.js";
import { BUCKET, S3_ENV, startObjectStore, uploadTinyLibrary, versitygwMissing, type ObjectStoreServer } from "./versitygw.js";

// Three replicas of the real server (child processes, so one can be killed with SIGKILL) share one
// bucket on versitygw, under steady prediction load through all three.

const ROOT = join(import.meta.dirname, "..", "..");
const PREFIX = "fleet";
const POLL_MS = 500;
/** How long the store stops answering. */
const OUTAGE_MS = 30_000;
/** Routes under load: one fusion of the changed adapters, and one of them alone. */
const LOADED = ["dyn2", "a1"];
const skip = versitygwMissing();

interface Replica {
  url: string;
  child: ChildProcess;
  logs: { level: number; msg: string; error?: string }[];
  exited: Promise<void>;
}

async function startReplica(t: Tap, s3: ObjectStoreServer, env: Record<string, string> = {}): Promise<Replica> {
  const cache = await mkdtemp(join(tmpdir(), "replica-cache-"));
  t.teardown(() => rm(cache, { recursive: true, force: true }));
  const args = ["--library", `s3://${BUCKET}/${PREFIX}`, "--s3-endpoint", s3.endpoint, "--library-cache", cache, "--library-poll-ms", String(POLL_MS), "--library-consistency", "strict", "--s3-timeout-ms", "1000"];
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", ...args, "--port", "0", "--threads", "1"], {
    cwd: ROOT,
    env: { ...process.env, ...S3_ENV, ADMIN_TOKEN: TOKEN, ...env },
    stdio: ["ignore", "pipe", "ignore"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
  });
  const logs: Replica["logs"] = [];
  let url = "";
  const lines = createInterface({ input: child.stdout! });
  const loaded = new Promise<void>((resolve, reject) => {
    lines.on("line", (line) => {
      const log = JSON.parse(line);
      logs.push(log);
      if (log.msg.startsWith("Server listening at")) url = log.msg.replace("Server listening at ", "");
      if (log.msg === "model library loaded") resolve();
    });
    exited.then(() => reject(new Error(`replica exited before it loaded: ${logs.map((l) => l.msg).join(" | ")}`)));
  });
  await loaded;
  return { url, child, logs, exited };
}

type Tap = { teardown(fn: () => unknown): void };
type Versions = Record<string, string>;

async function versions(url: string): Promise<Versions> {
  const { body } = await request(`${url}/v1/fusions`);
  return Object.fromEntries(body.fusions.map((f: { name: string; version: string }) => [f.name, f.version]));
}

async function bucketManifest(s3: ObjectStoreServer) {
  const answer = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}/library.json` }));
  return { etag: answer.ETag, manifest: JSON.parse(await answer.Body!.transformToString()) };
}

async function uploadForm(dir: string): Promise<FormData> {
  const form = new FormData();
  for (const file of await readdir(dir)) form.append(file, new Blob([await readFile(join(dir, file))]), file);
  return form;
}

function put(url: string, kind: string, name: string, form: FormData): Promise<Answer> {
  return request(`${url}/v1/admin/${kind}/${name}`, { method: "PUT", headers: AUTH, body: form });
}

function rollback(url: string, kind: string, name: string): Promise<Answer> {
  return request(`${url}/v1/admin/${kind}/${name}/rollback`, { method: "POST", headers: AUTH });
}

/** Waits until `check` holds, polling every 20 ms; returns how long it took, or Infinity after `limitMs`. */
async function until(check: () => Promise<boolean>, limitMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    if (await check().catch(() => false)) return Date.now() - start;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Infinity;
}

const same = (a: Versions, b: Versions) => LOADED.every((route) => a[route] === b[route]);

/** A small deterministic generator, so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
}

interface Answered {
  replica: number;
  route: string;
  start: number;
  end: number;
  status: number;
  version: string | undefined;
}

/** Keeps one prediction in flight per replica and route until stopped. */
function steadyLoad(replicas: () => Replica[]) {
  const answers: Answered[] = [];
  let running = true;
  const loops = [0, 1, 2].flatMap((i) =>
    LOADED.map(async (route) => {
      while (running) {
        const replica = replicas()[i];
        if (!replica) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          continue;
        }
        const start = Date.now();
        const answer = await request(`${replica.url}/v1/predict/${route}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ inputs: ["the fleet serves one library", "short"] }),
        }).catch(() => undefined);
        // A replica killed on purpose answers nothing; every other answer is counted.
        if (answer) answers.push({ replica: i, route, start, end: Date.now(), status: answer.status, version: answer.body?.version });
        // Steady, not saturating: the suite's other tests share the CPU.
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }),
  );
  return {
    answers,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

t.test("three replicas on one bucket", { skip, timeout: 300_000 }, async (fleet) => {
  const t = fleet;
  const s3 = await startObjectStore(t);
  await uploadTinyLibrary(s3.client, PREFIX);
  const staging = await mkdtemp(join(tmpdir(), "fleet-staging-"));
  t.teardown(() => rm(staging, { recursive: true, force: true }));
  let factor = 1;
  const retrained = async (name: string) => {
    factor += 0.05;
    return uploadForm(join(staging, await stage(staging, `adapters/${name}`, `${name}-${factor.toFixed(2)}`, "adapter.safetensors", scaleFloats(factor))));
  };

  const replicas = await Promise.all([startReplica(t, s3), startReplica(t, s3), startReplica(t, s3)]);
  const load = steadyLoad(() => replicas);

  // Which versions of the loaded routes each manifest served, and when it could have been live:
  // from the moment its change was sent until the next change was acknowledged.
  const history: { versions: Versions; sent: number; acked: number }[] = [{ versions: await versions(replicas[0].url), sent: 0, acked: 0 }];
  const record = async (sent: number, acked: number, at: string) => history.push({ versions: await versions(at), sent, acked });
  const convergence: number[] = [];
  /** How long after the change's acknowledgement each replica served it. */
  const converge = async () => {
    const { versions: target, acked } = history[history.length - 1];
    await Promise.all(
      replicas.map(async (replica) => {
        const waited = await until(async () => same(await versions(replica.url), target), 10 * POLL_MS);
        convergence.push(Number.isFinite(waited) ? Date.now() - acked : Infinity);
      }),
    );
  };

  await t.test("20 changes sent to random replicas: all succeed, and every replica serves each within 2 poll intervals", async (t) => {
    const next = random(15);
    const statuses: number[] = [];
    let rollbacks = 0;
    for (let i = 0; i < 20; i++) {
      const at = replicas[Math.floor(next() * 3)].url;
      const name = next() < 0.5 ? "a1" : "a2";
      const canRollBack = i >= 2 && next() < 0.4;
      if (canRollBack) rollbacks++;
      const sent = Date.now();
      const answer = canRollBack ? await rollback(at, "adapters", name) : await put(at, "adapters", name, await retrained(name));
      statuses.push(answer.status);
      await record(sent, Date.now(), at);
      await converge();
    }
    t.same(statuses.filter((s) => s < 200 || s > 299), [], `0 non-2xx of 20 changes (${20 - rollbacks} PUTs, ${rollbacks} rollbacks)`);
    t.ok(rollbacks > 0);
    const slowest = Math.max(...convergence);
    t.comment(`convergence after a change, ms: median ${convergence.sort((a, b) => a - b)[Math.floor(convergence.length / 2)]}, slowest ${slowest}`);
    t.ok(slowest <= 2 * POLL_MS, `every replica served every change within ${2 * POLL_MS} ms (slowest ${slowest} ms)`);
  });

  await t.test("two replicas change one module at once: one wins, the other gets 409, the manifest holds the winner", async (t) => {
    let raced = false;
    for (let attempt = 0; attempt < 5 && !raced; attempt++) {
      const forms = [await retrained("a3"), await retrained("a3")];
      const sent = Date.now();
      const answers = await Promise.all([put(replicas[0].url, "adapters", "a3", forms[0]), put(replicas[1].url, "adapters", "a3", forms[1])]);
      const statuses = answers.map((a) => a.status);
      const { manifest } = await bucketManifest(s3);
      if (statuses.includes(409)) {
        raced = true;
        t.same([...statuses].sort(), [200, 409], "one wins, one is refused");
        const winner = answers.find((a) => a.status === 200)!;
        t.equal(manifest.adapters.a3, winner.body.folder, "the manifest names the winner's folder");
        assertError(t, answers.find((a) => a.status === 409)!, 409, "library_changed", /another replica changed the library/);
      } else {
        // The second started after the first finished: both changes are in, one after the other.
        t.same(statuses, [200, 200]);
        t.ok(answers.some((a) => a.body.folder === manifest.adapters.a3));
      }
      // The replica whose change the manifest holds serves it already; the other catches up at its next poll.
      const latest = replicas[answers.findIndex((a) => a.status === 200 && a.body.folder === manifest.adapters.a3)];
      await record(sent, Date.now(), latest.url);
      const a3 = (await versions(latest.url)).a3;
      for (const replica of replicas) t.ok(Number.isFinite(await until(async () => (await versions(replica.url)).a3 === a3, 20 * POLL_MS)), "every replica serves the winner");
    }
    t.ok(raced, "a race happened in 5 tries");
  });

  for (const step of ["version-uploaded", "manifest-replaced"]) {
    await t.test(`kill -9 of a replica during a change (${step}), and its restart with an empty cache`, async (t) => {
      replicas[2].child.kill("SIGKILL");
      await replicas[2].exited;
      replicas[2] = await startReplica(fleet, s3, { FUSION_TEST_CRASH_AT: step });
      const before = await bucketManifest(s3);
      const sent = Date.now();
      const answer = await put(replicas[2].url, "adapters", "a1", await retrained("a1")).catch((err: Error) => err);
      t.ok(answer instanceof Error, "the replica died before it answered");
      await replicas[2].exited;
      const after = await bucketManifest(s3);
      if (step === "version-uploaded") t.same(after.manifest, before.manifest, "killed before the manifest: the library is as it was");
      else t.not(after.manifest.adapters.a1, before.manifest.adapters.a1, "killed after the manifest: the change is in");
      replicas[2] = await startReplica(fleet, s3);
      const ready = await request(`${replicas[2].url}/ready`);
      t.same(ready.body.library, { in_sync: true, etag: after.etag }, "the restarted replica serves the bucket's manifest");
      t.ok(Number.isFinite(await until(async () => (await request(`${replicas[0].url}/ready`)).body.library.etag === after.etag, 10 * POLL_MS)));
      const target = await versions(replicas[2].url);
      t.same(target, await versions(replicas[0].url), "what it serves is what a replica that saw the change serves");
      await record(sent, Date.now(), replicas[2].url);
      for (const replica of replicas) t.ok(Number.isFinite(await until(async () => same(await versions(replica.url), target), 10 * POLL_MS)), "every replica serves the bucket's library");
    });
  }

  await t.test(`the store stops answering for ${OUTAGE_MS / 1000} s: replicas keep serving, changes get 503, all converge after`, async (t) => {
    const during = load.answers.length;
    s3.pause();
    const paused = Date.now();
    let refused: Answer | undefined;
    try {
      refused = await put(replicas[1].url, "adapters", "a2", await retrained("a2"));
      const outOfSync = await until(async () => {
        const states = await Promise.all(replicas.map(async (r) => (await request(`${r.url}/ready`)).body));
        return states.every((s) => s.status === "ready" && s.library.in_sync === false);
      }, OUTAGE_MS);
      t.ok(Number.isFinite(outOfSync), "/ready says out of sync, and stays ready");
      const metrics = await request(`${replicas[0].url}/metrics`);
      t.match(metrics.text, /^library_in_sync 0$/m);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, OUTAGE_MS - (Date.now() - paused))));
    } finally {
      s3.resume();
    }
    assertError(t, refused!, 503, "library_store_unavailable", /object store .* did not answer/);
    const served = load.answers.slice(during).filter((a) => a.start >= paused && a.end <= paused + OUTAGE_MS);
    t.ok(served.length > 0 && served.every((a) => a.status === 200), `${served.length} predictions answered 200 during the outage`);
    t.ok(
      replicas.every((r) => r.logs.some((l) => l.msg.startsWith("library out of sync"))),
      "each replica says so in its log",
    );

    const sent = Date.now();
    const answer = await put(replicas[1].url, "adapters", "a2", await retrained("a2"));
    t.equal(answer.status, 200, "changes work again");
    await record(sent, Date.now(), replicas[1].url);
    const target = history[history.length - 1].versions;
    for (const replica of replicas) {
      t.ok(Number.isFinite(await until(async () => same(await versions(replica.url), target) && (await request(`${replica.url}/ready`)).body.library.in_sync, 20 * POLL_MS)));
    }
    const metrics = await request(`${replicas[0].url}/metrics`);
    t.match(metrics.text, /^library_in_sync 1$/m);
    t.match(metrics.text, new RegExp(`^route_version_info\\{route="dyn2",version="${target.dyn2}"\\} 1$`, "m"));
  });

  await load.stop();

  // A manifest is live in the bucket from some moment between its change's sending and its
  // acknowledgement until the next change's acknowledgement. With --library-consistency strict an
  // answer is sent only after a manifest read made during its request named its version.
  t.test("every answer came from a version the manifest named during its request", async (t) => {
    const failed = load.answers.filter((a) => a.status !== 200);
    t.same(failed, [], `0 failed predictions of ${load.answers.length}`);
    const named = (a: Answered) =>
      history.some((h, j) => h.sent <= a.end && (history[j + 1]?.acked ?? Infinity) >= a.start && h.versions[a.route] === a.version);
    const outside = load.answers.filter((a) => !named(a));
    const recomputed = await Promise.all(
      replicas.map(async (r) => [...(await request(`${r.url}/metrics`)).text.matchAll(/^library_answers_recomputed_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0)),
    );
    t.comment(`${load.answers.length} answers; computed again on the version a read during their request found, per replica: ${recomputed.join(", ")}`);
    t.same(outside, [], `${load.answers.length} answers checked against ${history.length} manifests`);
  });
});
