import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import t from "tap";
import { ConfigError, loadConfig } from "../../src/config.js";
import { loadBackbone } from "../../src/engine/backbone.js";
import { AdapterLibrary } from "../../src/library/library.js";
import { ObjectLibraryStore } from "../../src/library/object-store.js";
import { scaleFloats, stage, TINY_BACKBONE } from "../fixtures.js";
import { BUCKET, S3_ENV, startObjectStore, uploadTinyLibrary, versitygwMissing, type ObjectStoreServer } from "./versitygw.js";

const skip = versitygwMissing();
Object.assign(process.env, S3_ENV);
const backbone = await loadBackbone(TINY_BACKBONE);

async function tempDir(t: { teardown(fn: () => unknown): void }, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), name));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A replica's view of the bucket: its own store and empty cache. */
async function replica(t: { teardown(fn: () => unknown): void }, s3: ObjectStoreServer, prefix: string, timeoutMs = 5_000) {
  const cache = await tempDir(t, "cache-");
  const store = new ObjectLibraryStore({ url: `s3://${BUCKET}/${prefix}`, endpoint: s3.endpoint, pathStyle: undefined, cacheDir: cache, timeoutMs });
  t.teardown(() => store.close());
  return { store, cache, library: await AdapterLibrary.open(store, backbone.config) };
}

async function manifest(s3: ObjectStoreServer, prefix: string) {
  const answer = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}/library.json` }));
  return JSON.parse(await answer.Body!.transformToString());
}

t.test("the object store", { skip }, async (t) => {
  const s3 = await startObjectStore(t);
  const staging = await tempDir(t, "staging-");
  const scaled = async (name: string, factor: number) => join(staging, await stage(staging, `adapters/${name}`, `${name}-x${factor}`, "adapter.safetensors", scaleFloats(factor)));

  t.test("a replica with an empty cache serves the bucket's library, backbone downloaded", async (t) => {
    await uploadTinyLibrary(s3.client, "fresh");
    const { library } = await replica(t, s3, "fresh");
    t.same([...library.state.routes.keys()].sort(), ["a1", "a2", "a3", "a4", "a5", "dyn2", "dyn5", "multilabel", "static2", "static5", "tagger"]);
    t.ok(library.sync.inSync);
    t.match(library.sync.etag, /^"/);
  });

  t.test("a change made on one replica reaches another at its next refresh; rollback too", async (t) => {
    await uploadTinyLibrary(s3.client, "follow");
    const a = await replica(t, s3, "follow");
    const b = await replica(t, s3, "follow");
    const original = b.library.route("dyn2").version;
    const put = await a.library.putAdapter("a1", await scaled("a1", 1.5));
    t.equal(put.folder, "2");
    t.same((await manifest(s3, "follow")).adapters.a1, "2");
    t.equal(b.library.route("dyn2").version, original, "b serves what it had until it polls");
    t.same((await b.library.refresh()).sort(), ["a1", "dyn2", "dyn5", "static2", "static5"]);
    t.equal(b.library.route("dyn2").version, a.library.route("dyn2").version);
    t.same(await b.library.refresh(), [], "an unchanged manifest changes nothing");

    const back = await b.library.rollback("adapters", "a1");
    t.same([back.folder, back.previousFolder], ["1", "2"]);
    await a.library.refresh();
    t.equal(a.library.route("dyn2").version, original, "a rollback sent to b reaches a");
    const keys = await s3.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "follow/adapters/a1/2/" }));
    t.ok(keys.Contents?.some((o) => o.Key === "follow/adapters/a1/2/.claimed"), "a version number is claimed before its files are written");

    await a.library.putAdapter("a1", await scaled("a1", 1.7));
    await b.library.refresh();
    t.same((await readdir(join(b.cache, "adapters", "a1"))).sort(), ["1", "3"], "b's cache keeps the live version and the rollback target only");
  });

  t.test("a change built on a manifest another replica replaced is refused, and a lagging replica catches up before it changes", async (t) => {
    await uploadTinyLibrary(s3.client, "race");
    const a = await replica(t, s3, "race");
    const b = await replica(t, s3, "race");
    const { etag } = a.library.sync;
    await b.library.putAdapter("a2", await scaled("a2", 2));
    await t.rejects(a.store.writeManifest(a.library.state.manifest, etag), { kind: "conflict", code: "library_changed", message: /another replica changed the library/ });
    await t.rejects(a.store.writeManifest(a.library.state.manifest, undefined), { kind: "conflict", code: "library_changed" }, "If-None-Match: * on an existing manifest");
    t.same((await manifest(s3, "race")).adapters.a2, "2", "the refused writes changed nothing");

    // a has not polled: its change still starts from b's manifest, so b's change is kept.
    const put = await a.library.putAdapter("a3", await scaled("a3", 2));
    t.equal(put.folder, "2");
    t.same([(await manifest(s3, "race")).adapters.a2, (await manifest(s3, "race")).adapters.a3], ["2", "2"]);
  });

  t.test("two replicas claiming versions at once get distinct folders", async (t) => {
    await uploadTinyLibrary(s3.client, "claims");
    const a = await replica(t, s3, "claims");
    const b = await replica(t, s3, "claims");
    const dir = await scaled("a4", 3);
    const folders = await Promise.all([a.store.importVersion("adapters", "a4", dir), b.store.importVersion("adapters", "a4", dir), a.store.importVersion("adapters", "a4", dir)]);
    t.same(folders.sort(), ["2", "3", "4"]);
  });

  t.test("while the store does not answer, replicas keep serving, changes are refused with 503, and all converge after", async (t) => {
    await uploadTinyLibrary(s3.client, "outage");
    const a = await replica(t, s3, "outage", 500);
    const b = await replica(t, s3, "outage", 500);
    const original = a.library.route("a5").version;
    const dir = await scaled("a5", 0.5);
    s3.pause();
    try {
      await t.rejects(a.library.putAdapter("a5", dir), { kind: "unavailable", code: "library_store_unavailable", message: /object store .* did not answer/ });
      t.same(await b.library.refresh(), []);
      t.equal(b.library.sync.inSync, false);
      t.match(b.library.sync.error, /did not answer/);
      t.equal(a.library.route("a5").version, original, "still serving");
    } finally {
      s3.resume();
    }
    await a.library.putAdapter("a5", dir);
    await b.library.refresh();
    t.ok(b.library.sync.inSync);
    t.equal(b.library.route("a5").version, a.library.route("a5").version);
  });
});

t.test("--library takes an s3:// URL as it is, and refuses one without a valid bucket name", async (t) => {
  const config = loadConfig(["--library", "s3://models/fleet/library/", "--library-poll-ms", "250"], { AWS_ENDPOINT_URL: "http://127.0.0.1:9000" });
  t.same([config.library, config.libraryPollMs, config.s3Endpoint, config.s3PathStyle], ["s3://models/fleet/library", 250, "http://127.0.0.1:9000", "auto"]);
  t.throws(() => loadConfig(["--library", "s3://Models_1"], {}), new ConfigError("--library must be s3://bucket or s3://bucket/prefix, with a valid bucket name, got 's3://Models_1'"));
  t.throws(() => loadConfig(["--s3-path-style", "yes"], {}), ConfigError);
});
