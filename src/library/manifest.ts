import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ModelLoadError } from "../errors.js";

/**
 * models/library.json: which version folder of each adapter and fusion is served.
 *
 *   { "backbone": "backbones/all-MiniLM-L6-v2",
 *     "adapters": { "sentiment": "1", ... },
 *     "fusions":  { "hate-fusion": "1", ... } }
 *
 * Adapters live in adapters/<name>/<version>/ and fusions in fusions/<name>/<version>/, each an
 * AdapterHub save directory. `previous` (written by the admin API) names the version each
 * module had before its last change, which is what a rollback returns to. Any other key is
 * refused: a misspelt "adapters" would otherwise start a server that serves nothing.
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
/** A module's or folder's name: also the admin API's path parameter pattern. */
export const NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$";
const NAME = new RegExp(NAME_PATTERN);

const KEYS = ["backbone", "adapters", "fusions", "previous"];
const PREVIOUS_KEYS = ["adapters", "fusions"];

export async function readManifest(root: string): Promise<Manifest> {
  const path = join(root, MANIFEST_FILE);
  return manifestFromText(await readText(path), path);
}

/** A manifest from its text; `path` names where it came from in error messages. */
export function manifestFromText(text: string, path: string): Manifest {
  const raw = parseManifest(text, path);
  refuseUnknownKeys(raw, KEYS, "", path);
  if (typeof raw.backbone !== "string" || !raw.backbone) {
    throw new ModelLoadError("malformed_file", `${path}: 'backbone' must be a path relative to the library`);
  }
  const previous = raw.previous ?? {};
  if (!isObject(previous)) throw new ModelLoadError("malformed_file", `${path}: 'previous' must be an object`);
  refuseUnknownKeys(previous, PREVIOUS_KEYS, "previous.", path);
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

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch {
    throw new ModelLoadError("missing_file", `cannot read ${path}`);
  }
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/** A JSON object, or an error naming the line and column where the text stops being JSON. */
function parseManifest(text: string, path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const offset = jsonErrorOffset(text);
    const before = text.slice(0, offset).split("\n");
    // V8 says what it expected but, depending on the error and the Node version, not always where.
    const reason = (err as Error).message.replace(/, (?:\.\.\.)?".*" is not valid JSON$/s, "").replace(/ (?:in JSON )?at position \d+.*$/s, "");
    throw new ModelLoadError(
      "malformed_file",
      `${path}: invalid JSON at line ${before.length}, column ${before[before.length - 1].length + 1} (${reason})`,
    );
  }
  if (!isObject(value)) throw new ModelLoadError("malformed_file", `${path} is not a JSON object`);
  return value;
}

function refuseUnknownKeys(value: Record<string, unknown>, known: readonly string[], prefix: string, path: string): void {
  const unknown = Object.keys(value).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    throw new ModelLoadError(
      "malformed_file",
      `${path}: unknown key${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => `'${prefix}${k}'`).join(", ")} (known: ${known.map((k) => prefix + k).join(", ")})`,
    );
  }
}

/** Where the first character that no JSON text can have at that place is: text.length for a text cut short. */
function jsonErrorOffset(text: string): number {
  let i = 0;
  function fail(): never {
    throw new JsonStop(i);
  }
  const space = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const expect = (char: string) => {
    if (text[i] !== char) fail();
    i++;
  };
  const string = () => {
    expect('"');
    for (;;) {
      if (i >= text.length || text.charCodeAt(i) < 0x20) fail();
      const c = text[i++];
      if (c === '"') return;
      if (c !== "\\") continue;
      if (text[i] === "u") {
        if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail();
        i += 5;
      } else if (i < text.length && '"\\/bfnrt'.includes(text[i])) i++;
      else fail();
    }
  };
  const value = (): void => {
    space();
    const c = text[i];
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      i++;
      space();
      if (text[i] === close) {
        i++;
        return;
      }
      for (;;) {
        if (c === "{") {
          space();
          string();
          space();
          expect(":");
        }
        value();
        space();
        if (text[i] === close) {
          i++;
          return;
        }
        expect(",");
      }
    }
    if (c === '"') return string();
    const word = ["true", "false", "null"].find((w) => w[0] === c);
    if (word) {
      for (const letter of word) expect(letter);
      return;
    }
    const number = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i));
    if (!number) fail();
    i += number[0].length;
  };
  try {
    value();
    space();
    if (i < text.length) fail();
  } catch (err) {
    if (err instanceof JsonStop) return err.offset;
    throw err;
  }
  return text.length;
}

class JsonStop {
  constructor(readonly offset: number) {}
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
