import { cp, mkdir, readdir, rename, rm, writeFile } from "node:fs/promises";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { BadRequestError } from "../errors.js";
import { MANIFEST_FILE, type Manifest } from "./manifest.js";

export type ModuleKind = "adapters" | "fusions";

/**
 * The library's on-disk side, Triton-style: <root>/<kind>/<name>/<version>/ folders and one
 * manifest. Every write lands under a temporary name first and is renamed into place, so a crash
 * leaves either the old manifest or the new one, never a torn file.
 */
export class LibraryStore {
  constructor(readonly root: string) {}

  folder(kind: ModuleKind, name: string, version: string): string {
    return join(this.root, kind, name, version);
  }

  /** Copies an AdapterHub save directory into the next free version folder of `name`. */
  async importVersion(kind: ModuleKind, name: string, sourceDir: string): Promise<string> {
    const parent = join(this.root, kind, name);
    await mkdir(parent, { recursive: true });
    const existing = (await readdir(parent)).map(Number).filter(Number.isInteger);
    const version = String(Math.max(0, ...existing) + 1);
    const staging = join(parent, `.${version}.partial`);
    await rm(staging, { recursive: true, force: true });
    await cp(sourceDir, staging, { recursive: true, dereference: true });
    await rename(staging, join(parent, version));
    return version;
  }

  async removeModule(kind: ModuleKind, name: string): Promise<void> {
    await rm(join(this.root, kind, name), { recursive: true, force: true });
  }

  async writeManifest(manifest: Manifest): Promise<void> {
    const path = join(this.root, MANIFEST_FILE);
    const staging = `${path}.partial`;
    await writeFile(staging, `${JSON.stringify(manifest, null, 2)}\n`);
    await rename(staging, path);
  }

  /**
   * Resolves a user-given path that must stay inside the library root: relative, no `..`
   * escaping, no absolute paths.
   */
  resolveInside(userPath: string): string {
    if (isAbsolute(userPath)) throw new BadRequestError("path_outside_library", `path '${userPath}' must be relative to the library root`);
    const full = resolve(this.root, userPath);
    const rel = relative(resolve(this.root), full);
    if (rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel) || userPath.split(/[\\/]/).includes("..")) {
      throw new BadRequestError("path_outside_library", `path '${userPath}' is outside the library root`);
    }
    return full;
  }
}
