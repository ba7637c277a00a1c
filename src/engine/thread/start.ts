import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker, type WorkerOptions } from "node:worker_threads";

/**
 * Starts a worker on a module given as its built .js URL: that file, or, when the caller runs
 * from TypeScript source (tests, benchmarks), the .ts beside it through tsx, whose loader Node
 * does not pass on to workers.
 */
export function startWorker(script: URL, workerData: unknown, options: WorkerOptions = {}): Worker {
  const source = extname(fileURLToPath(import.meta.url)) === ".ts";
  if (!source) return new Worker(script, { ...options, workerData });
  const url = new URL(script.href.replace(/\.js$/, ".ts"));
  const tsx = import.meta.resolve("tsx/esm/api");
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true, workerData });
}
