import type { Server } from "node:http";
import type { ServerConfig } from "../config.js";

/**
 * Bounds the open connections, in all and per client address, so that clients holding
 * connections open (slowly or idly) cannot exhaust the process's file descriptors or crowd out
 * everyone else. A connection beyond a bound is closed at once, before any byte is read.
 */
export function limitConnections(server: Server, config: Pick<ServerConfig, "maxConnections" | "maxConnectionsPerClient">): void {
  server.maxConnections = config.maxConnections;
  const limit = config.maxConnectionsPerClient;
  if (limit === 0) return;
  const open = new Map<string, number>();
  server.on("connection", (socket) => {
    const client = socket.remoteAddress ?? "";
    const count = (open.get(client) ?? 0) + 1;
    if (count > limit) {
      socket.destroy();
      return;
    }
    open.set(client, count);
    socket.once("close", () => {
      const left = (open.get(client) ?? 1) - 1;
      if (left === 0) open.delete(client);
      else open.set(client, left);
    });
  });
}
