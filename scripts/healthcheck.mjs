// The image's HEALTHCHECK: GET /health on the address the server listens on. Flags after the
// image name (--port 9000) win over PORT and HOST, as in the server itself, so they are read from
// the server's own command line (it is the container's process 1, the entry point execs it).
import { readFileSync } from "node:fs";

const args = readFileSync("/proc/1/cmdline", "utf8").split("\0");
const flag = (name) => {
  const at = args.lastIndexOf(`--${name}`);
  if (at >= 0 && at + 1 < args.length) return args[at + 1];
  return args.findLast((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
};
const port = flag("port") ?? process.env.PORT ?? "8080";
const listen = flag("host") ?? process.env.HOST ?? "127.0.0.1";
// Listening on every interface includes the loopback one.
const host = listen === "0.0.0.0" || listen === "::" ? "127.0.0.1" : listen.includes(":") ? `[${listen}]` : listen;
fetch(`http://${host}:${port}/health`, { signal: AbortSignal.timeout(2500) }).then(
  (r) => process.exit(r.ok ? 0 : 1),
  () => process.exit(1),
);
