import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t, { type Test } from "tap";
import { admin, adminServer, routeVersions, writableLibrary } from "../admin/admin-library.js";
import { ENGINE_FIXTURES } from "../fixtures.js";
import { post, startServer } from "../server/harness.js";
import { cli, type Run } from "./cli-process.js";

/**
 * The fusion-serve command against a real server on a temporary copy of the tiny library: the
 * command runs in a child process, as users run it, and talks to the server over HTTP only.
 */
const TEXTS = ["a first text to classify", "and a second, longer one with more words in it"];
const ADAPTER_DIR = join(ENGINE_FIXTURES, "adapters", "a1");
const OTHER_ADAPTER_DIR = join(ENGINE_FIXTURES, "adapters", "a2");
const FUSION_DIR = join(ENGINE_FIXTURES, "fusions", "dyn2");

type CliEnv = Record<string, string | undefined>;

async function predictions(url: string, route: string) {
  const answer = await post(`${url}/v1/predict/${route}`, { inputs: TEXTS });
  return { status: answer.status, predictions: answer.body?.predictions };
}

function succeeded(t: Test, run: Run, what: string): void {
  t.equal(run.code, 0, `${what}: exit status 0 (stderr: ${run.stderr})`);
}

t.test("push loads an adapter save dir and a fusion save dir, kind read from their files; each is served as a route answering as the module it copies", async (t) => {
  const { url } = await adminServer(t, await writableLibrary(t));

  const adapter = await cli(["push", ADAPTER_DIR, "--name", "pushed", "--url", url]);
  succeeded(t, adapter, "adapter push");
  t.match(adapter.stdout, /^adapter 'pushed' is live at version [0-9a-f]{12} \(folder 1; no previous version to roll back to\)\nroutes changed: pushed\n$/, adapter.stdout);
  const pushed = await predictions(url, "pushed");
  t.equal(pushed.status, 200, "the new route answers");
  t.same(pushed.predictions, (await predictions(url, "a1")).predictions, "as a1, whose save dir it is");

  const fusion = await cli(["push", FUSION_DIR, "--name", "pushed-fusion", "--url", url]);
  succeeded(t, fusion, "fusion push");
  t.match(fusion.stdout, /^fusion 'pushed-fusion' is live at version [0-9a-f]{12} \(folder 1; no previous version to roll back to\)\nroutes changed: pushed-fusion\n$/, fusion.stdout);
  const fused = await predictions(url, "pushed-fusion");
  t.equal(fused.status, 200, "the new fusion route answers");
  t.same(fused.predictions, (await predictions(url, "dyn2")).predictions, "as dyn2, whose save dir it is");
});

t.test("list prints every adapter and fusion with its folders and routes; --json prints the admin API's answers", async (t) => {
  const { url } = await adminServer(t, await writableLibrary(t));
  succeeded(t, await cli(["push", FUSION_DIR, "--name", "pushed-fusion", "--url", url]), "push");

  const text = await cli(["list", "--url", url]);
  succeeded(t, text, "list");
  const [adapters, fusions] = text.stdout.split("\n\n");
  t.match(adapters, /^adapters\n {2}NAME +VERSION +FOLDER +ROLLBACK TO +SIZE +ROUTES\n/, adapters);
  t.match(adapters, /\n {2}a1 +[0-9a-f]{12} +1 +- +[\d.]+ KiB +a1, dyn2, dyn5, static2, static5, pushed-fusion\n/, "a1, with every route that uses it");
  t.match(fusions, /^fusions\n {2}NAME +VERSION +FOLDER +ROLLBACK TO +SIZE +ADAPTERS +ROUTES\n/, fusions);
  t.match(fusions, /\n {2}pushed-fusion +[0-9a-f]{12} +1 +- +[\d.]+ KiB +a1,a2 +pushed-fusion\n$/, "the pushed fusion, with its adapters");

  const json = await cli(["list", "--json", "--url", url]);
  succeeded(t, json, "list --json");
  t.same(JSON.parse(json.stdout), { adapters: (await admin(url, "GET", "/v1/admin/adapters")).body, fusions: (await admin(url, "GET", "/v1/admin/fusions")).body });
});

t.test("a refused push prints the server's code and message, exits 1, and nothing served changes", async (t) => {
  const root = await writableLibrary(t);
  const { url } = await adminServer(t, root);
  const broken = await mkdtemp(join(tmpdir(), "broken-save-"));
  t.teardown(() => rm(broken, { recursive: true, force: true }));
  await cp(ADAPTER_DIR, broken, { recursive: true });
  await writeFile(join(broken, "adapter_config.json"), '{"config": {"architecture": "bottleneck",');
  const manifest = await readFile(join(root, "library.json"), "utf8");
  const versions = await routeVersions(url);

  const run = await cli(["push", broken, "--name", "broken", "--url", url]);
  t.equal(run.code, 1, "exit status 1");
  t.equal(run.stdout, "", "no change is printed");
  t.match(run.stderr, /^fusion-serve push: refused: 422 malformed_file: .*adapter_config\.json is not valid JSON/, run.stderr);
  t.same(await routeVersions(url), versions, "the same routes at the same versions");
  t.equal(await readFile(join(root, "library.json"), "utf8"), manifest, "the manifest as it was");
});

t.test("rollback returns a pushed adapter to the version before its last push, its kind asked of the server", async (t) => {
  const { url } = await adminServer(t, await writableLibrary(t));
  const first = await cli(["push", ADAPTER_DIR, "--name", "pushed", "--url", url]);
  succeeded(t, first, "first push");
  const firstVersion = /version ([0-9a-f]{12})/.exec(first.stdout)?.[1];
  const replaced = await cli(["push", OTHER_ADAPTER_DIR, "--name", "pushed", "--url", url]);
  succeeded(t, replaced, "second push");
  t.match(replaced.stdout, /\(folder 2; rollback returns to folder 1\)/, replaced.stdout);
  t.same((await predictions(url, "pushed")).predictions, (await predictions(url, "a2")).predictions, "the route answers as a2 after the second push");

  const rollback = await cli(["rollback", "pushed", "--url", url]);
  succeeded(t, rollback, "rollback");
  t.equal(rollback.stdout, `adapter 'pushed' is live at version ${firstVersion} (folder 1; rollback returns to folder 2)\nroutes changed: pushed\n`);
  t.same((await predictions(url, "pushed")).predictions, (await predictions(url, "a1")).predictions, "and as a1 again after the rollback");

  const unknown = await cli(["rollback", "nothing-of-that-name", "--url", url]);
  t.equal(unknown.code, 1, "a name the server does not hold: exit status 1");
  t.match(unknown.stderr, /holds no adapter or fusion named 'nothing-of-that-name'/, unknown.stderr);
  const never = await cli(["rollback", "a1", "--kind", "adapter", "--url", url]);
  t.equal(never.code, 1, "an adapter never changed: exit status 1");
  t.match(never.stderr, /refused: 409 no_previous_version: /, never.stderr);
});

t.test("a server without the admin API, a wrong token and no server at all: exit status 1, saying which", async (t) => {
  const { url } = await startServer(t);
  const noAdmin = await cli(["push", ADAPTER_DIR, "--name", "pushed", "--url", url]);
  t.equal(noAdmin.code, 1);
  t.match(noAdmin.stderr, /refused: 404 not_found: .*\(the server serves \/v1\/admin only when ADMIN_TOKEN is set where it starts\)/, noAdmin.stderr);

  const withAdmin = await adminServer(t, await writableLibrary(t));
  const wrongToken = await cli(["list", "--url", withAdmin.url], { env: { ADMIN_TOKEN: "not-the-servers-token" } });
  t.equal(wrongToken.code, 1);
  t.match(wrongToken.stderr, /refused: 401 unauthorized: /, wrongToken.stderr);

  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const { port } = closed.address() as { port: number };
  await new Promise((resolve) => closed.close(resolve));
  const unreachable = await cli(["list", "--url", `http://127.0.0.1:${port}`]);
  t.equal(unreachable.code, 1);
  t.match(unreachable.stderr, new RegExp(`cannot reach the server at http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`), unreachable.stderr);
});

t.test("a command line that cannot be acted on exits 2 naming what is wrong; --help of each command, and --version, exit 0", async (t) => {
  const notAFolder = join(ADAPTER_DIR, "adapter_config.json");
  const usageErrors: [string[], RegExp, CliEnv?][] = [
    [[], /^Usage: fusion-serve <command>/],
    [["deploy"], /unknown command 'deploy' \(commands: serve, push, list, rollback, export\)/],
    [["push", "--name", "x"], /push: the save directory DIR is missing/],
    [["push", ADAPTER_DIR], /push: --name is missing/],
    [["push", ADAPTER_DIR, "--name", "x", "--kind", "lora"], /push: --kind must be adapter or fusion, not 'lora'/],
    [["push", ADAPTER_DIR, "--name", "x", "--nmae", "y"], /push: Unknown option '--nmae'/],
    [["push", ADAPTER_DIR, "extra", "--name", "x"], /push: unexpected argument 'extra'/],
    [["push", notAFolder, "--name", "x"], /push: .*adapter_config\.json is not a folder/],
    [["push", ENGINE_FIXTURES, "--name", "x"], /push: .* holds neither adapter_config\.json \(save_adapter\) nor adapter_fusion_config\.json/],
    [["push", ADAPTER_DIR, "--name", "x", "--url", "127.0.0.1:8080"], /push: --url must be a URL such as http:\/\/127\.0\.0\.1:8080, not '127\.0\.0\.1:8080'/],
    [["list", "--url", "ftp://127.0.0.1"], /list: --url must be an http or https URL/],
    [["list"], /list: no admin token: set ADMIN_TOKEN \(as for the server\) or pass --token/, { ADMIN_TOKEN: undefined }],
    [["rollback"], /rollback: NAME is missing/],
    [["rollback", "a1", "--kind", "both"], /rollback: --kind must be adapter or fusion/],
  ];
  for (const [args, message, env] of usageErrors) {
    const run = await cli(args, { env });
    t.equal(run.code, 2, `fusion-serve ${args.join(" ")}: exit status 2`);
    t.match(run.stderr, message, run.stderr);
    t.equal(run.stdout, "", "nothing on stdout");
  }
  for (const [args, usage] of [
    [["--help"], /^Usage: fusion-serve <command> \[options\]\n/],
    [["push", "--help"], /^Usage: fusion-serve push DIR --name NAME /],
    [["list", "-h"], /^Usage: fusion-serve list /],
    [["rollback", "--help"], /^Usage: fusion-serve rollback NAME /],
    [["serve", "--help"], /^Usage: fusion-serve serve \[options\].*\n[^]*--admin-token <value>/],
    [["export", "--help"], /^usage: fusion-serve export --route NAME --out DIR /],
    [["--version"], /^fusion-serve \d+\.\d+\.\d+/],
  ] as const) {
    const run = await cli(args);
    t.equal(run.code, 0, `fusion-serve ${args.join(" ")}: exit status 0 (${run.stderr})`);
    t.match(run.stdout, usage, `fusion-serve ${args.join(" ")}`);
  }
});
