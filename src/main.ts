import { ConfigError, HelpRequested, loadConfig, type ServerConfig } from "./config.js";
import { buildApp } from "./server/app.js";
import { loadRuntime } from "./server/serving.js";

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

// Stop accepting connections, answer every request already received, release the engine, exit.
// A shutdown that outlasts --shutdown-timeout-ms exits anyway, with status 1.
const shutdown = async (signal: NodeJS.Signals) => {
  app.log.info({ signal }, "shutting down: finishing in-flight requests");
  setTimeout(() => {
    app.log.error(`in-flight requests still running after ${config.shutdownTimeoutMs} ms; exiting anyway`);
    process.exit(1);
  }, config.shutdownTimeoutMs).unref();
  await app.close();
  app.log.info("shut down");
  process.exit(0);
};
process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);

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
  const runtime = await loadRuntime(config, app.log, app.metrics);
  // Without its engine the process cannot serve again; exiting lets the supervisor restart it.
  runtime.engine.onFailure((err) => fatal(`the engine stopped: ${err.message}`));
  app.serving.attach(runtime);
} catch (err) {
  await app.close();
  fatal(`cannot load the model library at ${config.library}: ${(err as Error).message}`);
}
