import { readdir, readFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import t from "tap";
import { assertError } from "../error-shape.js";
import { ENGINE_FIXTURES } from "../fixtures.js";
import { zip } from "../formats/torch-zip.js";
import { post, request, type Answer } from "../server/harness.js";
import { adminServer, routeVersions, TOKEN, writableLibrary } from "./admin-library.js";

/**
 * Files and bodies built to hurt the server, each sent as an upload a token holder could send:
 * every one is refused with a 4xx and a code, /health answers while it is handled, nothing live
 * changes, and no temp file is left under the library's .uploads/.
 */

const root = await writableLibrary(t);
const { app, url } = await adminServer(t, root);
const A1 = join(ENGINE_FIXTURES, "adapters", "a1");
const a1Files = async () => Object.fromEntries(await Promise.all((await readdir(A1)).map(async (f) => [f, await readFile(join(A1, f))] as const)));

function upload(files: Record<string, Buffer>, name = "a1"): Promise<Answer> {
  const form = new FormData();
  for (const [file, bytes] of Object.entries(files)) form.append(file, new Blob([new Uint8Array(bytes)]), file);
  return request(`${url}/v1/admin/adapters/${name}`, { method: "PUT", headers: { authorization: `Bearer ${TOKEN}` }, body: form });
}

/** Runs `task` while /health is asked again and again; every probe must be answered 200. */
async function probing<T>(t: Tap, task: Promise<T>): Promise<T> {
  let done = false;
  const result = task.finally(() => (done = true));
  let probes = 0;
  do {
    const health = await request(`${url}/health`);
    t.equal(health.status, 200, "/health answers meanwhile");
    probes++;
  } while (!done);
  t.ok(probes >= 1);
  return result;
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

async function assertUnharmed(t: Tap, versions: Record<string, string>) {
  t.equal((await request(`${url}/health`)).status, 200, "the server is alive");
  t.same(await routeVersions(url), versions, "every route keeps its version");
  t.equal((await post(`${url}/v1/predict/a1`, { inputs: "still served" })).status, 200, "a1 still predicts");
  t.same(await readdir(join(root, ".uploads")).catch(() => []), [], "no temp file left under .uploads/");
}

/** A safetensors file of a header of its own over `body`. */
function safetensors(header: Record<string, unknown>, body: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, body]);
}

const A1_UP = "bert.encoder.layer.0.output.adapters.a1.adapter_up.weight";

const cases: { name: string; files: () => Promise<Record<string, Buffer>>; status: number; code: string }[] = [
  {
    name: "a pytorch_adapter.bin whose pickle is 24 Mi EMPTY_DICT opcodes",
    files: async () => {
      const { "adapter.safetensors": _, ...rest } = await a1Files();
      const pickle = Buffer.concat([Buffer.from([0x80, 2]), Buffer.alloc(24 << 20, "}"), Buffer.from(".")]);
      return { ...rest, "pytorch_adapter.bin": zip({ "archive/data.pkl": pickle, "archive/byteorder": Buffer.from("little") }) };
    },
    status: 422,
    code: "malformed_file",
  },
  {
    name: "an adapter.safetensors of 1000 entries on one 1 MiB range",
    files: async () => ({
      ...(await a1Files()),
      "adapter.safetensors": safetensors(
        Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`${A1_UP}.${i}`, { dtype: "F32", shape: [1 << 18], data_offsets: [0, 1 << 20] }])),
        Buffer.alloc(1 << 20),
      ),
    }),
    status: 422,
    code: "malformed_file",
  },
  {
    name: "a pytorch_adapter.bin whose zip lists one 8 MiB member 1000 times",
    files: async () => {
      const { "adapter.safetensors": _, ...rest } = await a1Files();
      const good = zip({ "archive/data/0": Buffer.alloc(8 << 20), "archive/data.pkl": Buffer.from([0x80, 2, 0x7d, 0x2e]) });
      const end = good.length - 22;
      const directory = good.readUInt32LE(end + 16);
      const first = good.subarray(directory, directory + 46 + good.readUInt16LE(directory + 28));
      const pkl = good.subarray(directory + first.length, end);
      const copies = Array.from({ length: 1000 }, (_, i) => {
        const name = Buffer.from(`archive/data/${i + 1}`);
        const entry = Buffer.from(first.subarray(0, 46));
        entry.writeUInt16LE(name.length, 28);
        return Buffer.concat([entry, name]);
      });
      const entries = Buffer.concat([first, pkl, ...copies]);
      const tail = Buffer.from(good.subarray(end));
      tail.writeUInt16LE(1002, 8);
      tail.writeUInt16LE(1002, 10);
      tail.writeUInt32LE(entries.length, 12);
      return { ...rest, "pytorch_adapter.bin": Buffer.concat([good.subarray(0, directory), entries, tail]) };
    },
    status: 422,
    code: "malformed_file",
  },
  {
    name: "a tensor of shape (10000, then 100,000 dimensions of 1)",
    files: async () => ({
      ...(await a1Files()),
      "adapter.safetensors": safetensors({ [A1_UP]: { dtype: "F32", shape: [10000, ...Array(100_000).fill(1)], data_offsets: [0, 40000] } }, Buffer.alloc(40000)),
    }),
    status: 422,
    code: "malformed_file",
  },
  ...[3e7, 1e10].map((numLabels) => ({
    name: `a head_config.json with num_labels ${numLabels}`,
    files: async () => {
      const files = await a1Files();
      const head = JSON.parse(files["head_config.json"].toString());
      head.config.num_labels = numLabels;
      return { ...files, "head_config.json": Buffer.from(JSON.stringify(head)) };
    },
    status: 422,
    code: "malformed_file",
  })),
  ...[{ LABEL_1: 0 }, { A1_0: 0.5, A1_1: 1 }].map((label2id) => ({
    name: `a head_config.json with label2id ${JSON.stringify(label2id)}`,
    files: async () => {
      const files = await a1Files();
      const head = JSON.parse(files["head_config.json"].toString());
      head.config.label2id = label2id;
      return { ...files, "head_config.json": Buffer.from(JSON.stringify(head)) };
    },
    status: 422,
    code: "malformed_file",
  })),
  {
    name: "an adapter_config.json with scaling 1e300",
    files: async () => {
      const files = await a1Files();
      const config = JSON.parse(files["adapter_config.json"].toString());
      config.config.scaling = 1e300;
      return { ...files, "adapter_config.json": Buffer.from(JSON.stringify(config)) };
    },
    status: 422,
    code: "non_finite_weights",
  },
];

for (const c of cases) {
  t.test(`${c.name}: ${c.status} ${c.code}, /health answering meanwhile, nothing changed`, async (t) => {
    const versions = await routeVersions(url);
    const answer = await probing(t, c.files().then(upload));
    assertError(t, answer, c.status, c.code);
    await assertUnharmed(t, versions);
  });
}

t.test("a multipart body complete by Content-Length but without its closing boundary: 400 malformed_upload, its temp file removed", async (t) => {
  const versions = await routeVersions(url);
  const config = await readFile(join(A1, "adapter_config.json"));
  const body = Buffer.concat([
    Buffer.from('--XX\r\ncontent-disposition: form-data; name="adapter_config.json"; filename="adapter_config.json"\r\ncontent-type: application/octet-stream\r\n\r\n'),
    config,
    Buffer.from("\r\n"),
  ]);
  const answer = await probing(
    t,
    new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(url).port), "127.0.0.1");
      let text = "";
      socket.setTimeout(10_000, () => reject(new Error(`no answer; got ${JSON.stringify(text)}`)));
      socket.on("data", (d) => {
        text += d;
        if (text.includes("\r\n\r\n{") && text.endsWith("}")) {
          socket.destroy();
          resolve(text);
        }
      });
      socket.on("error", reject);
      socket.write(
        `PUT /v1/admin/adapters/a1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TOKEN}\r\ncontent-type: multipart/form-data; boundary=XX\r\ncontent-length: ${body.length}\r\n\r\n`,
      );
      socket.write(body);
    }),
  );
  t.match(answer, /^HTTP\/1\.1 400 /);
  t.same(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)).error, "malformed_upload");
  await assertUnharmed(t, versions);
});

t.test("more than 16 non-file fields: 413 payload_too_large", async (t) => {
  const versions = await routeVersions(url);
  const form = new FormData();
  for (let i = 0; i < 40; i++) form.append(`field${i}`, "x".repeat(1000));
  for (const [file, bytes] of Object.entries(await a1Files())) form.append(file, new Blob([new Uint8Array(bytes)]), file);
  const answer = await request(`${url}/v1/admin/adapters/a1`, { method: "PUT", headers: { authorization: `Bearer ${TOKEN}` }, body: form });
  assertError(t, answer, 413, "payload_too_large", /non-file fields/);
  await assertUnharmed(t, versions);
});

t.test("a PUT of an adapter without head files says in its answer that the adapter's route is gone", async (t) => {
  const { "head_config.json": _, "model_head.safetensors": __, ...files } = await a1Files();
  const scaled = Buffer.from(files["adapter.safetensors"]);
  // Another version (one float changed), so the change is not the live files again.
  scaled.writeFloatLE(0.25, scaled.length - 4);
  const answer = await upload({ ...files, "adapter.safetensors": scaled }, "a1");
  t.equal(answer.status, 200, answer.text);
  t.same(answer.body.removed_routes, ["a1"], "removed_routes names the route");
  assertError(t, await post(`${url}/v1/predict/a1`, { inputs: "x" }), 404, "route_not_found");
  t.equal((await post(`${url}/v1/predict/dyn2`, { inputs: "x" })).status, 200, "fusions of a1 still predict");
  t.ok(app.server.listening);
});
