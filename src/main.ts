import { ConfigError, HelpRequested, loadConfig, runtimeOptions, type ServerConfig } from "./config.js";
import { loadRuntime } from "./core/runtime.js";
import { buildApp } from "./server/app.js";

function readConfig(): ServerConfig {
  try {
    return loadConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof HelpRequested) {
      console.log(err.message);
      process.exit(0);
    }
    if (err instanceof ConfigError) {
      console.error(`fusion-serve: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
}

const config = readConfig();
const app = await buildApp(config);

// SIGTERM: drain first. /ready answers 503 at once while the listener still accepts and serves
// for --drain-seconds, because the Service's endpoints, kube-proxy and load balancers stop sending
// only some time after the signal; a connection refused meanwhile would be a failed request.
// Then stop accepting connections, answer every request already received, release the engine,
// exit. SIGINT (Ctrl-C at a terminal) skips the drain, and so does a second signal during one.
// A close that outlasts --shutdown-timeout-ms exits anyway, with status 1.
let endDrain: (() => void) | undefined;
let shuttingDown = false;
const shutdown = async (signal: NodeJS.Signals) => {
  if (shuttingDown) {
    endDrain?.();
    return;
  }
  shuttingDown = true;
  app.serving.drain();
  const drainMs = signal === "SIGTERM" ? config.drainSeconds * 1000 : 0;
  if (drainMs > 0) {
    app.log.info({ signal, drainSeconds: config.drainSeconds }, "draining: /ready answers 503, requests are still served");
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, drainMs);
      endDrain = () => (clearTimeout(timer), resolve());
    });
  }
  app.log.info({ signal }, "shutting down: finishing in-flight requests");
  setTimeout(() => {
    app.log.error(`in-flight requests still running after ${config.shutdownTimeoutMs} ms; exiting anyway`);
    process.exit(1);
  }, config.shutdownTimeoutMs).unref();
  await app.close();
  app.log.info("shut down");
  process.exit(0);
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

/** A start that cannot go on: one line on stderr for whoever started it, and the log's own record. */
function fatal(message: string): never {
  app.log.fatal(message);
  console.error(`fusion-serve: ${message}`);
  process.exit(1);
}

// Listen first, so /health answers and /ready says 503 while the library loads.
try {
  await app.listen({ host: config.host, port: config.port });
} catch (err) {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === "EADDRINUSE" ? "the port is already in use" : code === "EACCES" ? "permission denied (a port below 1024 needs privileges)" : (err as Error).message;
  fatal(`cannot listen on ${config.host}:${config.port}: ${why} (--host, --port)`);
}
try {
  const runtime = await loadRuntime(runtimeOptions(config), app.log, app.metrics);
  // Without its engine the process cannot serve again; exiting lets the supervisor restart it.
  runtime.engine.onFailure((err) => fatal(`the engine stopped: ${err.message}`));
  app.serving.attach(runtime);
} catch (err) {
  await app.close();
  fatal(`cannot load the model library at ${config.library}: ${(err as Error).message}`);
}
