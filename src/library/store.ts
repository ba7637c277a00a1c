import { copyFile, mkdir, mkdtemp, open, readdir, realpath, rename, rm, stat } from "node:fs/promises";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { BadRequestError, ModelLoadError } from "../errors.js";
import { isValidName, MANIFEST_FILE, readManifest, type Manifest } from "./manifest.js";

export type ModuleKind = "adapters" | "fusions";

const KINDS: readonly ModuleKind[] = ["adapters", "fusions"];
const UPLOADS = ".uploads";
const VERSION = /^\d+$/;
/** What an interrupted import (`.N.partial`) or prune (`.N.removing`) leaves in a module folder. */
const UNFINISHED = /^\.\d+\.(partial|removing)$/;

/** A manifest and the store's tag for that exact content (an ETag; none for a folder). */
export interface ManifestVersion {
  readonly manifest: Manifest;
  readonly etag: string | undefined;
}

/**
 * Where a library's manifest and version folders are kept: a local folder (LibraryStore) or a
 * bucket that several replicas share (ObjectLibraryStore). The library loads modules from the
 * local folders `fetch` gives.
 */
export interface VersionStore {
  /** The folder or URL, for messages. */
  readonly location: string;
  /** Whether others may change the manifest (replicas on one bucket): only then can the live state fall behind it. */
  readonly shared: boolean;
  readManifest(): Promise<ManifestVersion>;
  /** The manifest if it is no longer the one tagged `etag`; undefined while it is. */
  pollManifest(etag: string | undefined): Promise<ManifestVersion | undefined>;
  /**
   * Replaces the manifest, provided it is still the one tagged `etag` (409 otherwise, and nothing
   * is written); returns the new tag. Durable once it returns.
   */
  writeManifest(manifest: Manifest, etag: string | undefined): Promise<string | undefined>;
  /** Once at start, before anything is loaded. */
  open(manifest: Manifest): Promise<void>;
  /** After `manifest` is published: local copies it no longer names may go. */
  keepOnly(manifest: Manifest): Promise<void>;
  /** A local folder holding the files of a version folder. */
  fetch(kind: ModuleKind, name: string, version: string): Promise<string>;
  backboneDir(manifest: Manifest): Promise<string>;
  importVersion(kind: ModuleKind, name: string, sourceDir: string): Promise<string>;
  /** Removes the files of a module that `before` named and the current manifest no longer does. */
  removeModule(kind: ModuleKind, name: string, before: Manifest): Promise<void>;
  prune(kind: ModuleKind, name: string, manifest: Manifest, keep: number): Promise<void>;
  uploadFolder(): Promise<string>;
  /** Releases what the store holds open (an object store's connections). */
  close(): void;
  resolveInside(userPath: string): Promise<string>;
}

/**
 * The library's on-disk side, Triton-style: <root>/<kind>/<name>/<version>/ folders and one
 * manifest. Every write lands under a temporary name, is synced, and is renamed into place, and a
 * version folder is durable before the manifest names it: after a crash or a power loss the
 * manifest is the old one or the acknowledged new one, and names only complete folders. What an
 * interrupted change leaves behind is removed by `cleanUp` at the next start.
 */
export class LibraryStore implements VersionStore {
  readonly shared = false;

  constructor(readonly root: string) {}

  get location(): string {
    return this.root;
  }

  folder(kind: ModuleKind, name: string, version: string): string {
    return join(this.root, kind, name, version);
  }

  async fetch(kind: ModuleKind, name: string, version: string): Promise<string> {
    return this.folder(kind, name, version);
  }

  async readManifest(): Promise<ManifestVersion> {
    return { manifest: await readManifest(this.root), etag: undefined };
  }

  /** Only this server changes its folder, so the manifest never changes underneath it. */
  async pollManifest(): Promise<undefined> {
    return undefined;
  }

  async backboneDir(manifest: Manifest): Promise<string> {
    return resolve(this.root, manifest.backbone);
  }

  open(manifest: Manifest): Promise<void> {
    return this.cleanUp(manifest);
  }

  /** The folder is the library itself: what it keeps is for `prune`. */
  async keepOnly(): Promise<void> {}

  /** A folder holds nothing open between calls. */
  close(): void {}

  /**
   * Copies the files of an AdapterHub save directory inside the library (links followed, none may
   * lead out of it) into the next free version folder of `name`.
   */
  async importVersion(kind: ModuleKind, name: string, sourceDir: string): Promise<string> {
    const files = await this.sourceFiles(sourceDir, sourceDir);
    const parent = join(this.root, kind, name);
    if (await mkdir(parent, { recursive: true })) {
      await syncDir(join(this.root, kind));
      await syncDir(this.root);
    }
    const existing = (await readdir(parent)).filter((e) => VERSION.test(e)).map(Number);
    const version = String(Math.max(0, ...existing) + 1);
    const staging = join(parent, `.${version}.partial`);
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging);
    for (const [file, real] of files) {
      await copyFile(real, join(staging, file));
      await syncFile(join(staging, file));
    }
    await syncDir(staging);
    crashPoint("version-copied");
    await rename(staging, join(parent, version));
    await syncDir(parent);
    crashPoint("version-renamed");
    return version;
  }

  async removeModule(kind: ModuleKind, name: string): Promise<void> {
    await rm(join(this.root, kind, name), { recursive: true, force: true });
  }

  async writeManifest(manifest: Manifest): Promise<undefined> {
    const path = join(this.root, MANIFEST_FILE);
    const staging = `${path}.partial`;
    const file = await open(staging, "w");
    try {
      await file.writeFile(`${JSON.stringify(manifest, null, 2)}\n`);
      await file.sync();
    } finally {
      await file.close();
    }
    crashPoint("manifest-written");
    await rename(staging, path);
    // The change is acknowledged after this returns, so the rename itself must be on disk.
    await syncDir(this.root);
    crashPoint("manifest-renamed");
  }

  /** A fresh folder for an upload, inside the library so that a crash's leftover is found at start. */
  async uploadFolder(): Promise<string> {
    await mkdir(join(this.root, UPLOADS), { recursive: true });
    return mkdtemp(join(this.root, UPLOADS, "upload-"));
  }

  /**
   * Keeps at most `keep` version folders of a module: the live one, the rollback target, and the
   * newest others. A folder is renamed away before it is deleted, so a crash never leaves half of
   * one under a version name.
   */
  async prune(kind: ModuleKind, name: string, manifest: Manifest, keep: number): Promise<void> {
    const parent = join(this.root, kind, name);
    const named = new Set([manifest[kind][name], manifest.previous?.[kind][name]]);
    const others = (await readdir(parent)).filter((e) => VERSION.test(e) && !named.has(e)).sort((a, b) => Number(b) - Number(a));
    const room = Math.max(0, keep - [...named].filter((v) => v !== undefined).length);
    for (const version of others.slice(room)) {
      const removing = join(parent, `.${version}.removing`);
      await rename(join(parent, version), removing);
      crashPoint("version-pruning");
      await rm(removing, { recursive: true, force: true });
    }
  }

  /**
   * Removes what interrupted changes left: staging and half-removed folders, the staged manifest,
   * uploads, modules no manifest entry names, and version folders newer than any the manifest
   * names (a change that never got as far as the manifest: every change names its new folder).
   * Older unnamed folders are versions kept by `prune` and stay.
   */
  async cleanUp(manifest: Manifest): Promise<void> {
    await rm(join(this.root, `${MANIFEST_FILE}.partial`), { force: true });
    await rm(join(this.root, UPLOADS), { recursive: true, force: true });
    for (const kind of KINDS) {
      for (const name of await subfolders(join(this.root, kind))) {
        if (!isValidName(name)) continue;
        const named = [manifest[kind][name], manifest.previous?.[kind][name]].filter((v) => v !== undefined).map(Number);
        const newest = Math.max(0, ...named);
        const parent = join(this.root, kind, name);
        const entries = await readdir(parent);
        const stale = entries.filter((e) => UNFINISHED.test(e) || (VERSION.test(e) && Number(e) > newest));
        for (const entry of stale) await rm(join(parent, entry), { recursive: true, force: true });
        if (named.length === 0 && stale.length === entries.length) await rm(parent, { recursive: true, force: true });
      }
    }
  }

  /**
   * Resolves a user-given path that must stay inside the library root: relative, no `..`, and its
   * real path (links followed) and that of every file in it inside the root too. Returns the real path.
   */
  async resolveInside(userPath: string): Promise<string> {
    if (isAbsolute(userPath)) throw new BadRequestError("path_outside_library", `path '${userPath}' must be relative to the library root`);
    const full = resolve(this.root, userPath);
    const rel = relative(resolve(this.root), full);
    if (rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel) || userPath.split(/[\\/]/).includes("..")) {
      throw new BadRequestError("path_outside_library", `path '${userPath}' is outside the library root`);
    }
    const real = await this.realInside(full, userPath);
    if (!(await stat(real)).isDirectory()) throw new BadRequestError("not_a_folder", `path '${userPath}' is not a folder`);
    await this.sourceFiles(real, userPath);
    return real;
  }

  /**
   * The files a save directory holds, as [name, real path]: every one must really be inside the
   * root, so a link cannot bring a file from elsewhere into the library. Subfolders are not part
   * of a save directory and are neither read nor copied.
   */
  private async sourceFiles(dir: string, shown: string): Promise<[string, string][]> {
    const files: [string, string][] = [];
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (!entry.isFile() && !entry.isSymbolicLink()) continue;
      const real = await this.realInside(join(dir, entry.name), `${shown}/${entry.name}`);
      if ((await stat(real)).isFile()) files.push([entry.name, real]);
    }
    return files;
  }

  private async realInside(path: string, shown: string): Promise<string> {
    let real: string;
    try {
      real = await realpath(path);
    } catch {
      throw new ModelLoadError("missing_file", `'${shown}' does not exist in the library`);
    }
    const rel = relative(await realpath(this.root), real);
    if (rel === "" || rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
      throw new BadRequestError("path_outside_library", `'${shown}' leads outside the library root`);
    }
    return real;
  }
}

async function subfolders(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return [];
  }
}

async function syncFile(path: string): Promise<void> {
  const file = await open(path, "r");
  try {
    await file.sync();
  } finally {
    await file.close();
  }
}

/** A rename or a new entry is durable only once its folder is synced. */
const syncDir = syncFile;

/**
 * Test hook: the crash test sets FUSION_TEST_CRASH_AT to a step name to kill the process there,
 * the way a kill -9 or a power loss would, and checks what a restart finds.
 */
export function crashPoint(step: string): void {
  if (process.env.FUSION_TEST_CRASH_AT === step) process.kill(process.pid, "SIGKILL");
}
