import { join } from "node:path";
import { ModelLoadError } from "../errors.js";
import { readJson } from "../engine/backbone.js";

/**
 * models/library.json: which version folder of each adapter and fusion is served.
 *
 *   { "backbone": "backbones/all-MiniLM-L6-v2",
 *     "adapters": { "sentiment": "1", ... },
 *     "fusions":  { "hate-fusion": "1", ... } }
 *
 * Adapters live in adapters/<name>/<version>/ and fusions in fusions/<name>/<version>/, each an
 * AdapterHub save directory. `previous` (written by the admin API) names the version each
 * module had before its last change, which is what a rollback returns to.
 */
export interface Manifest {
  readonly backbone: string;
  readonly adapters: Readonly<Record<string, string>>;
  readonly fusions: Readonly<Record<string, string>>;
  readonly previous?: {
    readonly adapters: Readonly<Record<string, string>>;
    readonly fusions: Readonly<Record<string, string>>;
  };
}

export const MANIFEST_FILE = "library.json";
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export async function readManifest(root: string): Promise<Manifest> {
  const path = join(root, MANIFEST_FILE);
  const raw = await readJson(path);
  if (typeof raw.backbone !== "string" || !raw.backbone) {
    throw new ModelLoadError("malformed_file", `${path}: 'backbone' must be a path relative to the library`);
  }
  const previous = (raw.previous ?? {}) as Record<string, unknown>;
  return {
    backbone: raw.backbone,
    adapters: entries(raw.adapters, "adapters", path),
    fusions: entries(raw.fusions, "fusions", path),
    previous: {
      adapters: entries(previous.adapters, "previous.adapters", path),
      fusions: entries(previous.fusions, "previous.fusions", path),
    },
  };
}

function entries(value: unknown, field: string, path: string): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ModelLoadError("malformed_file", `${path}: '${field}' must map names to version folders`);
  }
  const out: Record<string, string> = {};
  for (const [name, version] of Object.entries(value)) {
    if (!NAME.test(name) || typeof version !== "string" || !NAME.test(version)) {
      throw new ModelLoadError("malformed_file", `${path}: ${field}.${name} must be a plain name mapped to a version folder name`);
    }
    out[name] = version;
  }
  return out;
}

export function isValidName(name: string): boolean {
  return NAME.test(name);
}
