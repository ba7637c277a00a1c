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

// Listen first, so /health answers and /ready says 503 while the library loads.
await app.listen({ host: config.host, port: config.port });
try {
  app.serving.attach(await loadRuntime(config, app.log));
} catch (err) {
  app.log.fatal(`cannot load the model library at ${config.library}: ${(err as Error).message}`);
  await app.close();
  process.exit(1);
}
