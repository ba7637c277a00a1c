import multipart from "@fastify/multipart";
import type {} from "@fastify/swagger";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { BadRequestError, MODEL_LOAD_ERROR_CODES } from "../../errors.js";
import { ADAPTERHUB_FILES, SAVE_FILES } from "../../library/adapterhub.js";
import type { AdapterLibrary, ChangeResult, LibraryState } from "../../library/library.js";
import { NAME_PATTERN } from "../../library/manifest.js";
import type { ModuleKind } from "../../library/store.js";
import { BODY_ERRORS, DRAINING, type ErrorCodes, errorResponses, PATH_ERRORS } from "../errors.js";
import { bearerMatcher, bearerToken, digest } from "../bearer.js";
import { statusOf, UnauthorizedError } from "../status.js";
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
  const authorized = bearerMatcher(options.token);
  const metrics = adminMetrics(options.registry, options.library);

  await app.register(multipart);

  app.addHook("onRequest", async (request) => {
    if (!authorized(request.headers.authorization)) {
      audit(request, "auth", "-", "-", "denied");
      throw new UnauthorizedError();
    }
  });

  app.addHook("preValidation", async (request) => {
    if (request.isMultipart()) request.body = {};
  });

  for (const [segment, kind] of Object.entries(KINDS)) {
    // Names generated clients give the operations: listAdapters, putAdapter, … listFusions, putFusion, …
    const title = segment === "adapters" ? "Adapters" : "Fusions";
    const one = title.slice(0, -1);
    const tag = { tags: ["admin"], security: [{ bearer: [] }] };
    app.get(`/v1/admin/${segment}`, { schema: { ...tag, summary: `List ${segment}`, operationId: `list${title}`, response: { 200: listSchema, ...errorResponses(AUTH_ERRORS, DRAINING, NOT_READY) } } }, async () => {
      return listModules(options.library().state, kind);
    });

    app.put<{ Params: { name: string }; Body: { path: string } | undefined }>(
      `/v1/admin/${segment}/:name`,
      {
        schema: {
          ...tag,
          summary: `Load or replace ${kind === "adapters" ? "an adapter" : "a fusion route"} from an AdapterHub save directory`,
          operationId: `put${one}`,
          description:
            "Either JSON `{\"path\": \"incoming/my-adapter\"}`, a save directory inside the library root, or a " +
            "multipart/form-data upload of the directory's files, each under its own file name " +
            `(at most ${options.maxUploadBytes} bytes each). The module is loaded and validated completely before it is published; ` +
            "a refused change (4xx) leaves what is serving untouched.",
          params: nameParams,
          body: {
            content: {
              "application/json": {
                schema: {
                  type: "object",
                  properties: { path: { type: "string", minLength: 1, description: "Save directory, relative to the library root" } },
                  required: ["path"],
                  additionalProperties: false,
                },
              },
              "multipart/form-data": { schema: uploadSchema(kind) },
            },
          },
          response: {
            200: changeSchema,
            ...errorResponses(AUTH_ERRORS, PATH_ERRORS, BODY_ERRORS, DRAINING, NOT_READY, SHARED_STORE, {
              400: ["path_outside_library", "not_a_folder", "missing_body", "unexpected_file", "empty_upload", "malformed_upload"],
              413: ["payload_too_large"],
              422: MODEL_LOAD_ERROR_CODES,
            }),
          },
        },
      },
      async (request, reply) =>
        change(request, reply, "put", kind, async () => {
          const { name } = request.params;
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
          if (request.body === undefined) throw new BadRequestError("missing_body", 'send JSON {"path": "<save directory>"} or a multipart/form-data upload');
          return put(await library.resolveInside(request.body.path));
        }),
    );

    app.delete<{ Params: { name: string } }>(
      `/v1/admin/${segment}/:name`,
      {
        schema: {
          ...tag,
          summary: `Delete ${kind === "adapters" ? "an adapter (409 while a fusion uses it)" : "a fusion route"}`,
          operationId: `delete${one}`,
          params: nameParams,
          response: {
            200: changeSchema,
            ...errorResponses(AUTH_ERRORS, PATH_ERRORS, BODY_ERRORS, DRAINING, NOT_READY, SHARED_STORE, notFound(kind), kind === "adapters" ? { 409: ["adapter_in_use"] } : {}),
          },
        },
      },
      async (request, reply) => change(request, reply, "delete", kind, () => options.library().remove(kind, request.params.name)),
    );

    app.post<{ Params: { name: string } }>(
      `/v1/admin/${segment}/:name/rollback`,
      {
        schema: {
          ...tag,
          summary: "Return to the version before the last change",
          operationId: `rollback${one}`,
          description: "Rolling back twice returns to where the first rollback started.",
          params: nameParams,
          response: {
            200: changeSchema,
            ...errorResponses(AUTH_ERRORS, PATH_ERRORS, BODY_ERRORS, DRAINING, NOT_READY, SHARED_STORE, notFound(kind), { 409: ["no_previous_version"], 422: MODEL_LOAD_ERROR_CODES }),
          },
        },
      },
      async (request, reply) => change(request, reply, "rollback", kind, () => options.library().rollback(kind, request.params.name)),
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
      return { kind: result.kind, name: result.name, version: result.version, folder: result.folder, previous_folder: result.previousFolder, routes: result.routes, removed_routes: result.removedRoutes };
    } catch (err) {
      stop();
      const status = statusOf(err);
      metrics.changes.inc({ kind, action, result: status < 500 ? "refused" : "error" });
      audit(request, action, kind, request.params.name, `refused:${status}`);
      throw err;
    }
  }

  function audit(request: FastifyRequest, action: string, kind: string, name: string, result: string, folder?: string) {
    request.log.info({ audit: { token_id: tokenId(request.headers.authorization), action, kind, name, result, folder } }, "admin call");
  }
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
  // Version gauges are computed from the live state at each scrape, so they can never lag a change
  // (route_version_info is the server's own, served with or without this API).
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
  };
}

/** Who made a call, without logging the secret: a short hash of the presented token. */
function tokenId(header: string | undefined): string {
  const token = bearerToken(header);
  return token ? digest(token).toString("hex").slice(0, 8) : "none";
}

const AUTH_ERRORS: ErrorCodes = { 401: ["unauthorized"] };
const NOT_READY: ErrorCodes = { 503: ["not_ready"] };
/** A library on object storage: another replica's change came first, or the store cannot be reached or loaded from. */
const SHARED_STORE: ErrorCodes = { 409: ["library_changed"], 503: ["library_store_unavailable", "library_out_of_sync"] };
const notFound = (kind: ModuleKind): ErrorCodes => ({ 404: [kind === "adapters" ? "adapter_not_found" : "fusion_not_found"] });


const nameParams = {
  type: "object",
  properties: { name: { type: "string", pattern: NAME_PATTERN, description: "Adapter or fusion name: letters, digits, '.', '_', '-'; at most 64" } },
  required: ["name"],
} as const;

/** Which files of an AdapterHub save directory each kind of module needs; the others are optional. */
const REQUIRED_FILES: Record<ModuleKind, readonly string[]> = {
  adapters: [SAVE_FILES.adapterConfig, SAVE_FILES.adapterWeights[0]],
  fusions: [SAVE_FILES.fusionConfig, SAVE_FILES.fusionWeights[0], SAVE_FILES.headConfig, SAVE_FILES.headWeights[0]],
};

// An upload is streamed to disk by receiveUpload, which checks its file names, never parsed into a
// body: fastify validates the empty body the hook below gives it, and this schema documents the fields.
const uploadSchema = (kind: ModuleKind) => ({
  description: `The files of an AdapterHub save directory, each under its own file name; ${REQUIRED_FILES[kind].join(", ")} at least (weights may come as their PyTorch .bin form instead)`,
  type: "object",
  properties: Object.fromEntries([...ADAPTERHUB_FILES].map((file) => [file, { type: "string", format: "binary" }])),
  additionalProperties: false,
});

const changeSchema = {
  description: "The change, as published",
  type: "object",
  required: ["kind", "name", "version", "folder", "previous_folder", "routes", "removed_routes"],
  properties: {
    kind: { type: "string", enum: ["adapters", "fusions"] },
    name: { type: "string" },
    version: { type: ["string", "null"], description: "Content version now live; null after a delete" },
    folder: { type: ["string", "null"], description: "Version folder now live; null after a delete" },
    previous_folder: { type: ["string", "null"], description: "Version folder a rollback returns to" },
    routes: { type: "array", items: { type: "string" }, description: "Routes whose version changed" },
    removed_routes: {
      type: "array",
      items: { type: "string" },
      description: "Routes the change took away: a deleted module's, or an adapter's own route when its new save has no head",
    },
  },
} as const;

const listSchema = {
  description: "Every module of this kind, by name",
  type: "array",
  items: {
    type: "object",
    required: ["name", "version", "folder", "previous_folder", "size_bytes", "source", "routes"],
    properties: {
      name: { type: "string" },
      version: { type: "string", description: "Content hash of the module's files" },
      folder: { type: "string", description: "Version folder now live" },
      previous_folder: { type: ["string", "null"], description: "Version folder a rollback returns to" },
      size_bytes: { type: "integer" },
      source: { type: "string", description: "Where the live files are, relative to the library root" },
      adapters: { type: "array", items: { type: "string" }, description: "Fusions only: the fused adapters, in order" },
      routes: { type: "array", items: { type: "string" }, description: "Routes that use the module" },
    },
  },
} as const;
