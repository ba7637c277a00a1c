import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { ENGINE_FIXTURES, FIXTURES } from "../fixtures.js";

const ROOT = join(import.meta.dirname, "..", "..");
const ACCESS = "test-access-key";
const SECRET = "test-secret-key-not-a-real-one";
export const BUCKET = "library";

/** What the S3 client of a test, or of a server it starts, reads for credentials and region. */
export const S3_ENV = { AWS_ACCESS_KEY_ID: ACCESS, AWS_SECRET_ACCESS_KEY: SECRET, AWS_REGION: "us-east-1" };

/**
 * versitygw, an Apache-2.0 S3 gateway over a plain folder: built by .ci/run into .tools/bin, or
 * found in GOBIN, GOPATH/bin or on PATH.
 */
export function versitygwBinary(): string | undefined {
  const dirs = [join(ROOT, ".tools", "bin"), process.env.GOBIN, join(process.env.GOPATH ?? join(process.env.HOME ?? "", "go"), "bin"), ...(process.env.PATH ?? "").split(delimiter)];
  return dirs.filter((d): d is string => !!d).map((d) => join(d, "versitygw")).find((p) => existsSync(p));
}

/**
 * The reason to skip a test that needs versitygw, or undefined when it is there. In CI its absence
 * is a failure, never a skip: .ci/run builds it.
 */
export function versitygwMissing(): string | undefined {
  if (versitygwBinary()) return undefined;
  const why = "versitygw not found (.tools/bin, GOBIN, GOPATH/bin, PATH): GOBIN=$PWD/.tools/bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0";
  if (process.env.CI) throw new Error(`${why} (.ci/run builds it; it is required in CI)`);
  return why;
}

export interface ObjectStoreServer {
  readonly endpoint: string;
  /** SIGSTOP: the store accepts connections and never answers, as a hung or partitioned one does. */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
  readonly client: S3Client;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** versitygw on 127.0.0.1 over a fresh folder, with one empty bucket; stopped at teardown. */
export async function startObjectStore(t: { teardown(fn: () => unknown): void }): Promise<ObjectStoreServer> {
  const dir = await mkdtemp(join(tmpdir(), "versitygw-"));
  const port = await freePort();
  const child: ChildProcess = spawn(versitygwBinary()!, ["--access", ACCESS, "--secret", SECRET, "--port", `127.0.0.1:${port}`, "posix", dir], { stdio: "ignore" });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
    }
    await rm(dir, { recursive: true, force: true });
  };
  t.teardown(stop);
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({ endpoint, forcePathStyle: true, region: S3_ENV.AWS_REGION, credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET } });
  t.teardown(() => client.destroy());
  for (let attempt = 0; ; attempt++) {
    try {
      await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
      break;
    } catch (err) {
      if (attempt > 100) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return { endpoint, client, stop, pause: () => child.kill("SIGSTOP"), resume: () => child.kill("SIGCONT") };
}

/** Uploads the tiny library under `prefix`, its backbone as the bucket's backbones/tiny/. */
export async function uploadTinyLibrary(client: S3Client, prefix: string): Promise<void> {
  const put = (key: string, body: Buffer | string) => client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${prefix}/${key}`, Body: body }));
  const library = join(FIXTURES, "tiny-library");
  const manifest = JSON.parse(await readFile(join(library, "library.json"), "utf8"));
  for (const kind of ["adapters", "fusions"]) {
    for (const [name, version] of Object.entries(manifest[kind] as Record<string, string>)) {
      const folder = join(library, kind, name, version);
      for (const file of await readdir(folder)) await put(`${kind}/${name}/${version}/${file}`, await readFile(join(folder, file)));
    }
  }
  const backbone = join(ENGINE_FIXTURES, "backbone");
  for (const entry of await readdir(backbone, { withFileTypes: true })) {
    if (entry.isFile()) await put(`backbones/tiny/${entry.name}`, await readFile(join(backbone, entry.name)));
  }
  await put("library.json", JSON.stringify({ ...manifest, backbone: "backbones/tiny" }));
}
