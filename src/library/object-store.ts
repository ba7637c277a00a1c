import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { ConflictError, ModelLoadError, ServingError, UnavailableError } from "../errors.js";
import { manifestFromText, MANIFEST_FILE, type Manifest } from "./manifest.js";
import { crashPoint, LibraryStore, type ModuleKind, type ManifestVersion, type VersionStore } from "./store.js";

export interface ObjectStoreOptions {
  /** s3://bucket/prefix */
  readonly url: string;
  /** Absent: the SDK's own (AWS_ENDPOINT_URL, config files, or AWS). */
  readonly endpoint: string | undefined;
  /** Absent: path-style when an endpoint is given (most S3-compatible stores), virtual-hosted on AWS. */
  readonly pathStyle: boolean | undefined;
  /** Where version folders and the backbone are downloaded to: the loaders read folders. */
  readonly cacheDir: string | undefined;
  readonly timeoutMs: number;
}

/** Marks a version number as taken before its files are written, so two replicas never fill one folder. */
const CLAIM = ".claimed";
const VERSION = /^\d+$/;

export function isObjectStoreUrl(location: string): boolean {
  return location.startsWith("s3://");
}

/** The default cache folder of a library URL: one per bucket and prefix, as version numbers are unique only there. */
export function defaultCacheDir(url: string): string {
  return join(tmpdir(), `fusion-serve-cache-${createHash("sha256").update(url).digest("hex").slice(0, 12)}`);
}

/**
 * The library on S3-compatible object storage: the same layout as a folder (one manifest object,
 * immutable `<kind>/<name>/<N>/` version folders), shared by every replica.
 *
 * A new version's number is claimed with a create-only write of `<N>/.claimed` (If-None-Match: *),
 * so replicas adding versions at once get distinct folders; its files are uploaded before any
 * manifest names it. The manifest is replaced only with If-Match on the ETag of the one the change
 * was built from (If-None-Match: * when there is none): a change built on a manifest another replica
 * has since replaced is refused, never merged over it. Version folders are downloaded into a local
 * cache on first use, complete or not at all; a folder's content never changes, so a cached one
 * stays valid, and its claim is never deleted, so its number is never reused.
 */
export class ObjectLibraryStore implements VersionStore {
  readonly location: string;
  readonly shared = true;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly cache: string;
  /** Paths of JSON `{"path"}` changes and uploads live in the cache folder: the bucket has no folders to point at. */
  private readonly local: LibraryStore;

  constructor(options: ObjectStoreOptions) {
    const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(options.url);
    if (!match) throw new Error(`'${options.url}' is not an s3://bucket/prefix URL`);
    this.location = options.url;
    this.bucket = match[1];
    this.prefix = match[2].replace(/\/+$/, "");
    this.cache = options.cacheDir ?? defaultCacheDir(options.url);
    this.local = new LibraryStore(this.cache);
    this.client = new S3Client({
      endpoint: options.endpoint,
      forcePathStyle: options.pathStyle ?? options.endpoint !== undefined,
      maxAttempts: 2,
      // A store that stops answering must fail a call in bounded time, not hang an admin change or a poll.
      requestHandler: { connectionTimeout: options.timeoutMs, socketTimeout: options.timeoutMs },
    });
  }

  private key(...parts: string[]): string {
    return [this.prefix, ...parts].filter((p) => p !== "").join("/");
  }

  /** The prefix of every key in a folder. */
  private folderKey(...parts: string[]): string {
    return `${this.key(...parts)}/`;
  }

  async readManifest(): Promise<ManifestVersion> {
    const found = await this.getManifest(undefined);
    if (!found) throw new ModelLoadError("missing_file", `${this.location}: no ${MANIFEST_FILE} (the store answered Not Modified without one)`);
    return found;
  }

  pollManifest(etag: string | undefined): Promise<ManifestVersion | undefined> {
    return this.getManifest(etag);
  }

  private async getManifest(etag: string | undefined): Promise<ManifestVersion | undefined> {
    const key = this.key(MANIFEST_FILE);
    let text: string;
    let version: string | undefined;
    try {
      const answer = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, IfNoneMatch: etag }));
      text = await answer.Body!.transformToString("utf8");
      version = answer.ETag;
    } catch (err) {
      if (status(err) === 304) return undefined;
      if (status(err) === 404) throw new ModelLoadError("missing_file", `cannot read s3://${this.bucket}/${key}: no such object`);
      throw unavailable(this.location, err);
    }
    return { manifest: manifestFromText(text, `s3://${this.bucket}/${key}`), etag: version };
  }

  async writeManifest(manifest: Manifest, etag: string | undefined): Promise<string | undefined> {
    try {
      const answer = await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(MANIFEST_FILE),
          Body: `${JSON.stringify(manifest, null, 2)}\n`,
          ContentType: "application/json",
          ...(etag === undefined ? { IfNoneMatch: "*" } : { IfMatch: etag }),
        }),
      );
      crashPoint("manifest-replaced");
      return answer.ETag;
    } catch (err) {
      // 409 is how some stores answer two conditional writes racing on one key.
      if (status(err) === 412 || status(err) === 409) {
        throw new ConflictError("library_changed", "another replica changed the library since this one read it; nothing was changed: send the change again");
      }
      throw unavailable(this.location, err);
    }
  }

  open(): Promise<void> {
    return mkdir(this.cache, { recursive: true }).then(() => undefined);
  }

  /** Drops cached version folders the manifest names neither live nor as rollback target, so the cache does not grow with every change. */
  async keepOnly(manifest: Manifest): Promise<void> {
    for (const kind of ["adapters", "fusions"] as const) {
      for (const name of await entries(join(this.cache, kind))) {
        const keep = new Set([manifest[kind][name], manifest.previous?.[kind][name]]);
        for (const version of await entries(join(this.cache, kind, name))) {
          // A download in progress is a staging folder, never a bare version number.
          if (VERSION.test(version) && !keep.has(version)) await rm(join(this.cache, kind, name, version), { recursive: true, force: true });
        }
      }
    }
  }

  async fetch(kind: ModuleKind, name: string, version: string): Promise<string> {
    const folder = join(this.cache, kind, name, version);
    if (await exists(folder)) return folder;
    const prefix = this.folderKey(kind, name, version);
    // A save directory is flat: its claim and anything in a subfolder are no part of it.
    const keys = (await this.list(prefix)).filter((k) => !k.slice(prefix.length).includes("/") && k.slice(prefix.length) !== CLAIM);
    if (keys.length === 0) throw new ModelLoadError("missing_file", `${this.location}: ${kind}/${name}/${version}/ holds no files`);
    await this.download(keys, prefix, folder);
    return folder;
  }

  async backboneDir(manifest: Manifest): Promise<string> {
    if (isAbsolute(manifest.backbone)) return manifest.backbone;
    const parts = manifest.backbone.split("/").filter((p) => p !== "" && p !== ".");
    if (parts.includes("..")) {
      throw new ModelLoadError("malformed_file", `${this.location}: 'backbone' must be a folder of the bucket without '..', or an absolute local path`);
    }
    // Like a version folder, a backbone folder in the bucket is never rewritten: a new backbone gets a new path.
    const folder = join(this.cache, "backbones", ...parts);
    if (await exists(folder)) return folder;
    const prefix = this.folderKey(...parts);
    const keys = await this.list(prefix);
    if (keys.length === 0) throw new ModelLoadError("missing_file", `${this.location}: backbone folder ${parts.join("/")}/ holds no files`);
    await this.download(keys, prefix, folder);
    return folder;
  }

  async importVersion(kind: ModuleKind, name: string, sourceDir: string): Promise<string> {
    const files = (await readdir(sourceDir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
    const version = await this.claim(kind, name);
    for (const file of files) {
      await this.guard(this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(kind, name, version, file), Body: await readFile(join(sourceDir, file)) })));
    }
    crashPoint("version-uploaded");
    return version;
  }

  /** The next free version number of a module, taken with a create-only write. */
  private async claim(kind: ModuleKind, name: string): Promise<string> {
    const taken = (await this.versions(kind, name)).keys();
    let next = Math.max(0, ...[...taken].map(Number)) + 1;
    for (let attempt = 0; attempt < 100; attempt++, next++) {
      try {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(kind, name, String(next), CLAIM), Body: "", ContentLength: 0, IfNoneMatch: "*" }));
        return String(next);
      } catch (err) {
        if (status(err) !== 412 && status(err) !== 409) throw unavailable(this.location, err);
      }
    }
    throw new ConflictError("library_changed", `${kind} '${name}': no free version number after 100 tries; send the change again`);
  }

  /**
   * Deletes the files (never the claims) of the versions no longer wanted. Only versions older than
   * the newest one `manifest` names are touched: a newer one may be another replica's change, its
   * files still being uploaded.
   */
  async prune(kind: ModuleKind, name: string, manifest: Manifest, keep: number): Promise<void> {
    const named = new Set([manifest[kind][name], manifest.previous?.[kind][name]].filter((v): v is string => v !== undefined));
    const newest = Math.max(0, ...[...named].map(Number));
    const versions = await this.versions(kind, name);
    const others = [...versions].filter(([v, keys]) => !named.has(v) && Number(v) < newest && keys.length > 0).sort(([a], [b]) => Number(b) - Number(a));
    for (const [, keys] of others.slice(Math.max(0, keep - named.size))) await this.deleteKeys(keys);
  }

  async removeModule(kind: ModuleKind, name: string, before: Manifest): Promise<void> {
    const named = [before[kind][name], before.previous?.[kind][name]].filter((v) => v !== undefined).map(Number);
    const newest = Math.max(0, ...named);
    for (const [version, keys] of await this.versions(kind, name)) {
      if (Number(version) <= newest) await this.deleteKeys(keys);
    }
  }

  uploadFolder(): Promise<string> {
    return this.local.uploadFolder();
  }

  resolveInside(userPath: string): Promise<string> {
    return this.local.resolveInside(userPath);
  }

  /** Version number → keys of its files (claims left out), for every version a module has claimed. */
  private async versions(kind: ModuleKind, name: string): Promise<Map<string, string[]>> {
    const prefix = this.folderKey(kind, name);
    const versions = new Map<string, string[]>();
    for (const key of await this.list(prefix)) {
      const [version, file] = key.slice(prefix.length).split("/");
      if (!VERSION.test(version)) continue;
      const keys = versions.get(version) ?? [];
      if (file !== CLAIM) keys.push(key);
      versions.set(version, keys);
    }
    return versions;
  }

  private async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.guard(this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token })));
      for (const object of page.Contents ?? []) if (object.Key && !object.Key.endsWith("/")) keys.push(object.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys;
  }

  private async deleteKeys(keys: readonly string[]): Promise<void> {
    for (const key of keys) await this.guard(this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
  }

  /** Downloads every key under `prefix` into `folder`, through a staging folder renamed into place once complete. */
  private async download(keys: readonly string[], prefix: string, folder: string): Promise<void> {
    await mkdir(dirname(folder), { recursive: true });
    const staging = await mkdtemp(`${folder}.partial-`);
    try {
      for (const key of keys) {
        const parts = key.slice(prefix.length).split("/");
        // A key is the bucket's text: one with "..", "." or empty segments could write outside the folder.
        if (parts.some((part) => part === "" || part === "." || part === "..")) {
          throw new ModelLoadError("malformed_file", `${this.location}: object key '${key}' is not a plain path below '${prefix}'`);
        }
        const target = join(staging, ...parts);
        await mkdir(dirname(target), { recursive: true });
        const answer = await this.guard(this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key })));
        await pipeline(answer.Body as Readable, createWriteStream(target));
      }
      await rename(staging, folder).catch(async (err) => {
        // Another download of the same immutable folder finished first: its copy is as good.
        if (!(await exists(folder))) throw err;
      });
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  private async guard<T>(call: Promise<T>): Promise<T> {
    try {
      return await call;
    } catch (err) {
      if (err instanceof ServingError) throw err;
      throw unavailable(this.location, err);
    }
  }

  close(): void {
    this.client.destroy();
  }
}

function status(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

function unavailable(location: string, err: unknown): UnavailableError {
  const reason = (err as Error).message || (err as Error).name || String(err);
  return new UnavailableError("library_store_unavailable", `the library's object store (${location}) did not answer as expected: ${reason}`);
}

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
