import t from "tap";
import { DEFAULT_CONFIG } from "../../src/config.js";
import { isValidName } from "../../src/library/manifest.js";
import { NAME_PATTERN } from "../../src/library/manifest.js";
import { buildApp } from "../../src/server/app.js";
import { matchesErrorSchema } from "../error-shape.js";
import { writableLibrary } from "../fixtures.js";
import { request, startServer } from "./harness.js";

/**
 * Walks the OpenAPI document: every operation is sent the requests that make it answer each way
 * it can (valid, unauthenticated, malformed, oversized, unknown names, conflicts; on a server that
 * is still loading and on one that is shutting down), and every status it answers must be
 * documented for that operation, every error body of the Error schema.
 */
const TOKEN = "statuses-test-admin-token";
const AUTH = { authorization: `Bearer ${TOKEN}` };
// The API key is the admin token too, so one header passes both and a probe without it meets both.
const limits = { adminToken: TOKEN, apiKey: TOKEN, maxBodyBytes: 4096, maxUploadBytes: 4096 };

const live = await startServer(t, { library: await writableLibrary(t), ...limits });
const stopping = await startServer(t, { library: await writableLibrary(t), ...limits });
stopping.app.serving.stop();
const loadingApp = await buildApp({ ...DEFAULT_CONFIG, library: await writableLibrary(t), logLevel: "silent", ...limits });
t.teardown(() => loadingApp.close());
const loading = await loadingApp.listen({ host: "127.0.0.1", port: 0 });

interface Operation {
  parameters?: { in: string; name: string }[];
  requestBody?: unknown;
  security?: unknown[];
  responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }>;
}
const document = (await request(`${live.url}/docs/json`)).body as { paths: Record<string, Record<string, Operation>> };
const operations = Object.entries(document.paths).flatMap(([template, methods]) =>
  Object.entries(methods).map(([method, operation]) => ({ method: method.toUpperCase(), template, operation })),
);

type Probe = { what: string; path: Record<string, string>; init?: RequestInit; server?: string };

const json = (body: unknown, headers: Record<string, string> = AUTH): RequestInit => ({
  headers: { "content-type": "application/json", ...headers },
  body: typeof body === "string" ? body : JSON.stringify(body),
});
const upload = (files: Record<string, string>): RequestInit => {
  const form = new FormData();
  for (const [name, content] of Object.entries(files)) form.append(name, new Blob([content]), name);
  return { headers: AUTH, body: form };
};

/**
 * The Open Inference Protocol's operations answer errors in its own shape, but for what Node's
 * HTTP parser refuses before any route is known (408, 417, 431).
 */
const errorSchemaOf = (template: string, status: number) => (template.startsWith("/v2") && ![408, 417, 431].includes(status) ? "InferenceError" : "Error");
const isInferenceError = (body: unknown) => typeof body === "object" && body !== null && Object.keys(body).join() === "error" && typeof (body as { error: unknown }).error === "string";
/** Readiness probes answer 503 with their own body. */
const isProbe = (template: string) => template === "/ready" || template === "/v2/health/ready";

function probes(method: string, template: string, operation: Operation): Probe[] {
  const params = (operation.parameters ?? []).filter((p) => p.in === "path").map((p) => p.name);
  const withParams = (value: string) => Object.fromEntries(params.map((p) => [p, value]));
  const sendsBody = ["POST", "PUT", "DELETE"].includes(method);
  const texts = (values: string[]) => ({ inputs: [{ name: "text", shape: [values.length], datatype: "BYTES", data: values }] });
  const valid: Probe[] = template.startsWith("/v2/models") && method === "GET"
    ? [
        { what: "valid", path: { model: "a1" }, init: { headers: AUTH } },
        { what: "unknown route", path: { model: "nope" }, init: { headers: AUTH } },
      ]
    : template.startsWith("/v2/models")
    ? [
        { what: "valid", path: { model: "a1" }, init: json(texts(["x"])) },
        { what: "unknown route", path: { model: "nope" }, init: json(texts(["x"])) },
        { what: "invalid body", path: { model: "a1" }, init: json(texts([])) },
      ]
    : template.startsWith("/v1/predict")
    ? [
        { what: "valid", path: { fusion: "a1" }, init: json({ inputs: "x" }) },
        { what: "unknown route", path: { fusion: "nope" }, init: json({ inputs: "x" }) },
        { what: "invalid body", path: { fusion: "a1" }, init: json({ inputs: [] }) },
      ]
    : [
        { what: "valid", path: withParams("a1"), init: method === "PUT" ? json({ path: "adapters/a1/1" }) : { headers: AUTH } },
        { what: "unknown name", path: withParams("nope"), init: method === "PUT" ? json({ path: "incoming/nothing" }) : { headers: AUTH } },
        { what: "a fusion's name", path: withParams("dyn2"), init: { headers: AUTH } },
      ];
  const list: Probe[] = [...valid, { what: "headers over the limit", path: withParams("a1"), init: { headers: { ...AUTH, "x-big": "a".repeat(20_000) } } }];
  if (operation.security) list.push({ what: "no token", path: withParams("a1") });
  if (params.length > 0) {
    const init = (body: unknown) => (sendsBody ? json(body) : { headers: AUTH });
    list.push({ what: "parameter over maxParamLength", path: withParams("x".repeat(150)), init: init({}) });
    list.push({ what: "bad percent-encoding", path: withParams("%E0%A4%A"), init: init({}) });
    list.push({ what: "invalid name", path: withParams("no such name!"), init: init({ inputs: "x", path: "x" }) });
  }
  if (sendsBody) {
    list.push({ what: "not JSON", path: withParams("a1"), init: { method, headers: { ...AUTH, "content-type": "text/plain" }, body: "x" } });
    list.push({ what: "malformed JSON", path: withParams("a1"), init: json("{") });
    list.push({ what: "body over max-body-bytes", path: withParams("a1"), init: json({ inputs: "x".repeat(5000) }) });
  }
  if (method === "PUT") {
    list.push({ what: "no body", path: withParams("a1"), init: { headers: AUTH } });
    list.push({ what: "path outside the library", path: withParams("a1"), init: json({ path: "../x" }) });
    list.push({ what: "a folder that is no save directory", path: withParams("a1"), init: json({ path: "adapters" }) });
    list.push({ what: "unexpected file", path: withParams("a1"), init: upload({ "run.sh": "x" }) });
    list.push({ what: "file over max-upload-bytes", path: withParams("a1"), init: upload({ "adapter.safetensors": "x".repeat(5000) }) });
    list.push({ what: "broken form", path: withParams("a1"), init: { headers: { ...AUTH, "content-type": "multipart/form-data" }, body: "x" } });
    list.push({ what: "junk weights", path: withParams("a1"), init: upload({ "adapter_config.json": "{}", "adapter.safetensors": "junk" }) });
  }
  return [
    ...list,
    ...valid.map((p) => ({ ...p, what: `${p.what}, while loading`, server: loading })),
    ...valid.map((p) => ({ ...p, what: `${p.what}, while shutting down`, server: stopping.url })),
  ];
}

t.test("the document lists every operation of the server, each under an operationId of its own", async (t) => {
  t.ok(operations.length >= 13, `${operations.length} operations`);
  const ids = operations.map((o) => (o.operation as { operationId?: string }).operationId);
  t.same(ids.filter((id) => typeof id !== "string"), [], "every operation has an operationId");
  t.equal(new Set(ids).size, ids.length, "no two share one");
});

for (const { method, template, operation } of operations) {
  t.test(`${method} ${template}: every status it answers is documented`, async (t) => {
    const documented = new Set(Object.keys(operation.responses).map(Number));
    for (const [status, response] of Object.entries(operation.responses)) {
      const isProbeBody = isProbe(template) && status === "503";
      if (Number(status) >= 400 && !isProbeBody) t.equal(response.content?.["application/json"]?.schema.$ref, `#/components/schemas/${errorSchemaOf(template, Number(status))}`, `${status} is an ${errorSchemaOf(template, Number(status))}`);
    }
    const seen = new Set<number>();
    for (const probe of probes(method, template, operation)) {
      const path = template.replace(/\{(\w+)\}/g, (_, name: string) => (name in probe.path ? probe.path[name] : "x"));
      const answer = await request(`${probe.server ?? live.url}${path}`, { method, ...probe.init });
      seen.add(answer.status);
      t.ok(documented.has(answer.status), `${probe.what}: ${answer.status} is documented (${answer.text.slice(0, 160)})`);
      if (answer.status >= 400 && !(isProbe(template) && answer.status === 503)) {
        const schema = errorSchemaOf(template, answer.status);
        t.ok(schema === "Error" ? matchesErrorSchema(answer.body) : isInferenceError(answer.body), `${probe.what}: the body matches the ${schema} schema`);
      }
    }
    t.comment(`statuses seen: ${[...seen].sort().join(", ")}`);
  });
}

t.test("the admin name pattern is the manifest's name rule", async (t) => {
  const pattern = new RegExp(NAME_PATTERN);
  for (const name of ["a1", "hate-fusion", "x.y_z", "A", "9", "a".repeat(64), "a".repeat(65), "", "-a", ".a", "a b", "a/b", "é", "a\n"]) {
    t.equal(pattern.test(name), isValidName(name), JSON.stringify(name));
  }
});
