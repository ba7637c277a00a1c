import { DEFAULT_CONFIG, OPTIONS } from "../config.js";
import { CommandFailed, type Kind, KINDS, UsageError } from "./command.js";

/** The variable the server reads its admin token from; the commands read the same one. */
export const TOKEN_ENV = OPTIONS.find((o) => o.key === "adminToken")!.env;
export const DEFAULT_URL = `http://${DEFAULT_CONFIG.host}:${DEFAULT_CONFIG.port}`;

/** The flags of every command that talks to a running server's admin API. */
export const CONNECTION_OPTIONS = {
  url: { type: "string", default: DEFAULT_URL },
  token: { type: "string" },
} as const;

export const CONNECTION_USAGE = `  --url URL      the server (default ${DEFAULT_URL})
  --token TOKEN  its admin token (default: the ${TOKEN_ENV} variable, which the server reads too;
                 prefer the variable: flags show in ps)`;

/** A change as the admin API answers a PUT or a rollback. */
export interface Change {
  readonly kind: "adapters" | "fusions";
  readonly name: string;
  readonly version: string;
  readonly folder: string;
  readonly previous_folder: string | null;
  readonly routes: readonly string[];
  readonly removed_routes: readonly string[];
}

/** One module as the admin API lists it. */
export interface Listed {
  readonly name: string;
  readonly version: string;
  readonly folder: string;
  readonly previous_folder: string | null;
  readonly size_bytes: number;
  readonly source: string;
  readonly adapters?: readonly string[];
  readonly routes: readonly string[];
}

export class AdminClient {
  private readonly base: string;
  private readonly token: string;

  constructor(values: { url: string; token?: string }) {
    const token = values.token ?? process.env[TOKEN_ENV];
    if (!token) throw new UsageError(`no admin token: set ${TOKEN_ENV} (as for the server) or pass --token`);
    let url: URL;
    try {
      url = new URL(values.url);
    } catch {
      throw new UsageError(`--url must be a URL such as ${DEFAULT_URL}, not '${values.url}'`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new UsageError(`--url must be an http or https URL, not '${values.url}'`);
    this.base = url.href.replace(/\/+$/, "");
    this.token = token;
  }

  list(kind: Kind): Promise<Listed[]> {
    return this.call("GET", `/v1/admin/${KINDS[kind]}`) as Promise<Listed[]>;
  }

  /** Uploads the files of a save directory, each under its own file name, as the server expects them. */
  put(kind: Kind, name: string, files: FormData): Promise<Change> {
    return this.call("PUT", `/v1/admin/${KINDS[kind]}/${encodeURIComponent(name)}`, files) as Promise<Change>;
  }

  rollback(kind: Kind, name: string): Promise<Change> {
    return this.call("POST", `/v1/admin/${KINDS[kind]}/${encodeURIComponent(name)}/rollback`) as Promise<Change>;
  }

  /** The answer's JSON body; any answer but 200 is a CommandFailed with the server's code and message. */
  private async call(method: string, path: string, body?: FormData): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(this.base + path, { method, headers: { authorization: `Bearer ${this.token}` }, body });
    } catch (err) {
      const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
      throw new CommandFailed(`cannot reach the server at ${this.base}: ${cause}`);
    }
    const text = await response.text();
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      throw new CommandFailed(`${method} ${path} answered ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`);
    }
    if (response.status === 200) return answer;
    const { error, message } = (answer ?? {}) as { error?: string; message?: string };
    // The admin routes exist only on a server started with a token: its 404 is about that, not the module.
    const hint = error === "not_found" ? ` (the server serves /v1/admin only when ${TOKEN_ENV} is set where it starts)` : "";
    throw new CommandFailed(`refused: ${response.status} ${error ?? "(no code)"}: ${message ?? text}${hint}`);
  }
}

/** A change, for people: what is live now and which routes it touched. */
export function describeChange(change: Change): string {
  const kind = change.kind === "adapters" ? "adapter" : "fusion";
  const rollback = change.previous_folder === null ? "no previous version to roll back to" : `rollback returns to folder ${change.previous_folder}`;
  const lines = [
    `${kind} '${change.name}' is live at version ${change.version} (folder ${change.folder}; ${rollback})`,
    `routes changed: ${change.routes.length > 0 ? change.routes.join(", ") : "none"}`,
  ];
  if (change.removed_routes.length > 0) lines.push(`routes removed: ${change.removed_routes.join(", ")}`);
  return lines.join("\n");
}
