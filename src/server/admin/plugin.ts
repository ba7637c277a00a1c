import { createHash, timingSafeEqual } from "node:crypto";
import multipart from "@fastify/multipart";
import type {} from "@fastify/swagger";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { BadRequestError, ServingError, UnauthorizedError } from "../../errors.js";
import type { AdapterLibrary, ChangeResult, LibraryState } from "../../library/library.js";
import { isValidName } from "../../library/manifest.js";
import type { ModuleKind } from "../../library/store.js";
import { receiveUpload } from "./upload.js";

export interface AdminOptions {
  /** The live library; throws (503) while it is still loading. */
  readonly library: () => AdapterLibrary;
  readonly token: string;
  readonly registry: Registry;
  readonly maxUploadBytes: number;
  readonly keepVersions: number;
}

type Action = "put" | "delete" | "rollback";

const KINDS: Record<string, ModuleKind> = { adapters: "adapters", fusions: "fusions" };

/**
 * /v1/admin: hot swap of adapters and fusion routes. Every route in this scope requires the
 * bearer token; the library validates a change completely before it becomes visible, so a failed
 * call leaves what is serving untouched.
 */
export async function adminPlugin(app: FastifyInstance, options: AdminOptions): Promise<void> {
  const expected = digest(options.token);
  const metrics = adminMetrics(options.registry, options.library);

  await app.register(multipart);

  app.addHook("onRequest", async (request) => {
    const token = bearerToken(request.headers.authorization);
    if (token === undefined || !timingSafeEqual(digest(token), expected)) {
      audit(request, "auth", "-", "-", "denied");
      throw new UnauthorizedError();
    }
  });

  for (const [segment, kind] of Object.entries(KINDS)) {
    const tag = { tags: ["admin"], security: [{ bearer: [] }] };
    app.get(`/v1/admin/${segment}`, { schema: { ...tag, summary: `List ${segment}`, response: { 200: listSchema } } }, async () => {
      return listModules(options.library().state, kind);
    });

    app.put<{ Params: { name: string }; Body: { path?: string } }>(
      `/v1/admin/${segment}/:name`,
      {
        schema: {
          ...tag,
          summary: `Load or replace ${kind === "adapters" ? "an adapter" : "a fusion route"} from an AdapterHub save directory`,
          description:
            "Either JSON {\"path\": \"<dir relative to the library root>\"} or a multipart/form-data upload of the " +
            "directory's files (adapter_config.json, adapter.safetensors, adapter_fusion_config.json, " +
            "model_adapter_fusion.safetensors, head_config.json, model_head.safetensors).",
          params: nameParams,
          body: {
            content: {
              "application/json": { schema: { type: "object", properties: { path: { type: "string", minLength: 1 } }, required: ["path"], additionalProperties: false } },
              "multipart/form-data": { schema: { description: "the files of the save directory, each under its own file name" } },
            },
          },
          response: { 200: changeSchema },
        },
      },
      async (request, reply) =>
        change(request, reply, "put", kind, async () => {
          const name = checkName(request.params.name);
          const library = options.library();
          const put = (dir: string) => (kind === "adapters" ? library.putAdapter(name, dir, options.keepVersions) : library.putFusion(name, dir, options.keepVersions));
          if (request.isMultipart()) {
            const upload = await receiveUpload(request, options.maxUploadBytes, await library.uploadFolder());
            try {
              return await put(upload.dir);
            } finally {
              await upload.dispose();
            }
          }
          return put(await library.resolveInside(request.body?.path ?? ""));
        }),
    );

    app.delete<{ Params: { name: string } }>(
      `/v1/admin/${segment}/:name`,
      { schema: { ...tag, summary: `Delete ${kind === "adapters" ? "an adapter (409 while a fusion uses it)" : "a fusion route"}`, params: nameParams, response: { 200: changeSchema } } },
      async (request, reply) => change(request, reply, "delete", kind, () => options.library().remove(kind, checkName(request.params.name))),
    );

    app.post<{ Params: { name: string } }>(
      `/v1/admin/${segment}/:name/rollback`,
      { schema: { ...tag, summary: "Return to the version before the last change", params: nameParams, response: { 200: changeSchema } } },
      async (request, reply) => change(request, reply, "rollback", kind, () => options.library().rollback(kind, checkName(request.params.name))),
    );
  }

  async function change(request: FastifyRequest<{ Params: { name: string } }>, reply: FastifyReply, action: Action, kind: ModuleKind, run: () => Promise<ChangeResult>) {
    const stop = metrics.loadSeconds.startTimer({ kind, action });
    try {
      const result = await run();
      stop();
      metrics.changes.inc({ kind, action, result: "ok" });
      audit(request, action, kind, request.params.name, "ok", result.folder ?? undefined);
      reply.code(200);
      return result;
    } catch (err) {
      stop();
      const status = err instanceof ServingError ? err.status : 500;
      metrics.changes.inc({ kind, action, result: status < 500 ? "refused" : "error" });
      audit(request, action, kind, request.params.name, `refused:${status}`);
      throw err;
    }
  }

  function audit(request: FastifyRequest, action: string, kind: string, name: string, result: string, folder?: string) {
    request.log.info({ audit: { token_id: tokenId(request.headers.authorization), action, kind, name, result, folder } }, "admin call");
  }
}

function checkName(name: string): string {
  if (!isValidName(name)) throw new BadRequestError("invalid_name", `'${name}' is not a valid name (letters, digits, '.', '_', '-'; at most 64)`);
  return name;
}

function listModules(state: LibraryState, kind: ModuleKind) {
  const modules = kind === "adapters" ? state.adapters : state.fusions;
  return [...modules].map(([name, m]) => ({
    name,
    version: m.version,
    folder: state.manifest[kind][name],
    previous_folder: state.manifest.previous?.[kind][name] ?? null,
    size_bytes: m.sizeBytes,
    source: `${kind}/${name}/${state.manifest[kind][name]}`,
    adapters: "adapters" in m ? [...m.adapters] : undefined,
    routes: [...state.routes.values()].filter((r) => (kind === "adapters" ? r.adapters.some((a) => a === m) : r.fusion === m)).map((r) => r.name),
  }));
}

function adminMetrics(registry: Registry, library: () => AdapterLibrary) {
  // Version gauges are computed from the live state at each scrape, so they can never lag a change.
  const live = (): LibraryState | undefined => {
    try {
      return library().state;
    } catch {
      return undefined;
    }
  };
  return {
    changes: new Counter({ name: "admin_changes_total", help: "Admin changes by kind, action and result (ok, refused, error)", labelNames: ["kind", "action", "result"], registers: [registry] }),
    loadSeconds: new Histogram({
      name: "admin_load_validate_seconds",
      help: "Time to load, validate, write through and publish an admin change",
      labelNames: ["kind", "action"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    moduleVersion: new Gauge({
      name: "library_module_version_info",
      help: "Live version of each adapter and fusion (value 1)",
      labelNames: ["kind", "name", "version", "folder"],
      registers: [registry],
      collect() {
        this.reset();
        const state = live();
        if (!state) return;
        for (const kind of ["adapters", "fusions"] as const) {
          for (const [name, m] of kind === "adapters" ? state.adapters : state.fusions) {
            this.set({ kind, name, version: m.version, folder: state.manifest[kind][name] }, 1);
          }
        }
      },
    }),
    routeVersion: new Gauge({
      name: "route_version_info",
      help: "Live version of each route (value 1)",
      labelNames: ["route", "version"],
      registers: [registry],
      collect() {
        this.reset();
        for (const route of live()?.routes.values() ?? []) this.set({ route: route.name, version: route.version }, 1);
      },
    }),
  };
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

/** The token of an `Authorization: Bearer <token>` header; the scheme name is case-insensitive (RFC 7235). */
function bearerToken(header: string | undefined): string | undefined {
  return /^bearer +(.+)$/i.exec(header ?? "")?.[1];
}

/** Who made a call, without logging the secret: a short hash of the presented token. */
function tokenId(header: string | undefined): string {
  const token = bearerToken(header);
  return token ? digest(token).toString("hex").slice(0, 8) : "none";
}

const nameParams = { type: "object", properties: { name: { type: "string" } }, required: ["name"] } as const;

const changeSchema = {
  type: "object",
  properties: {
    kind: { type: "string" },
    name: { type: "string" },
    version: { type: ["string", "null"] },
    folder: { type: ["string", "null"] },
    previousFolder: { type: ["string", "null"] },
    routes: { type: "array", items: { type: "string" } },
  },
} as const;

const listSchema = {
  type: "array",
  items: {
    type: "object",
    properties: {
      name: { type: "string" },
      version: { type: "string" },
      folder: { type: "string" },
      previous_folder: { type: ["string", "null"] },
      size_bytes: { type: "integer" },
      source: { type: "string" },
      adapters: { type: "array", items: { type: "string" } },
      routes: { type: "array", items: { type: "string" } },
    },
  },
} as const;
