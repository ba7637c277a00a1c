import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { FastifyInstance } from "fastify";
import { post, request, startServer } from "./harness.js";

/** Far beyond every bound configured here: a connection still open after it was never going to close. */
const GENEROUS_MS = 30_000;

interface RawClient {
  readonly socket: Socket;
  /** Settles when the connection closes, with what the server sent. */
  readonly closed: Promise<string>;
  isOpen(): boolean;
}

/** What the server sent before it closed the connection; fails when it stays open far beyond every bound. */
async function closedByServer(client: RawClient): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const giveUp = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`connection still open after ${GENEROUS_MS} ms`)), GENEROUS_MS);
  });
  try {
    return await Promise.race([client.closed, giveUp]);
  } finally {
    clearTimeout(timer);
  }
}

/** A raw connection that sends `opening`, then `drip` every 250 ms until the server closes it; it never closes it itself. */
async function rawClient(port: number, opening: string, drip?: string): Promise<RawClient> {
  const socket = connect({ host: "127.0.0.1", port });
  let received = "";
  let open = true;
  socket.on("data", (chunk) => (received += chunk.toString("latin1")));
  // The server may reset the connection while a drip is on its way: that is a close too.
  socket.on("error", () => undefined);
  await once(socket, "connect");
  if (opening) socket.write(opening);
  const timer = drip ? setInterval(() => socket.write(drip), 250) : undefined;
  const closed = new Promise<string>((resolve) =>
    socket.once("close", () => {
      open = false;
      clearInterval(timer);
      resolve(received);
    }),
  );
  return { socket, closed, isOpen: () => open };
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

/** Waits until the server holds `count` connections: a client's "connect" precedes the server's accept. */
async function serverConnections(app: FastifyInstance, count: number): Promise<void> {
  const current = () => new Promise<number>((resolve, reject) => app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
  while ((await current()) !== count) await sleep(20);
}

t.test("slow headers, slow bodies and silent connections are closed by the server, while normal requests keep getting answers", { timeout: 120_000 }, async (t) => {
  const { url } = await startServer(t, { headersTimeoutMs: 1_000, receiveTimeoutMs: 2_000 });
  const port = portOf(url);
  const slowHeaders = "POST /v1/predict/a1 HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  const slowBody = 'POST /v1/predict/a1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"inputs": "';
  const clients = {
    headers: await Promise.all(Array.from({ length: 10 }, () => rawClient(port, slowHeaders, "X-Slow: 1\r\n"))),
    body: await Promise.all(Array.from({ length: 10 }, () => rawClient(port, slowBody, "a"))),
    silent: await Promise.all(Array.from({ length: 5 }, () => rawClient(port, ""))),
  };
  const all = Object.values(clients).flat();

  // Normal requests, one after another, until every slow connection is closed.
  const answers: { status: number; slowOpen: number }[] = [];
  const allClosed = Promise.allSettled(all.map(closedByServer));
  let done = false;
  void allClosed.then(() => (done = true));
  while (!done) {
    const slowOpen = all.filter((c) => c.isOpen()).length;
    answers.push({ status: (await post(`${url}/v1/predict/a1`, { inputs: "a normal request" })).status, slowOpen });
    answers.push({ status: (await request(`${url}/health`)).status, slowOpen });
    await sleep(50);
  }

  for (const [kind, group] of Object.entries(clients)) {
    const results = await Promise.allSettled(group.map(closedByServer));
    t.equal(results.filter((r) => r.status === "fulfilled").length, group.length, `every ${kind} connection closed by the server`);
    const first = results.find((r): r is PromiseFulfilledResult<string> => r.status === "fulfilled");
    t.comment(`${kind}: the server sent ${JSON.stringify(first?.value.split("\r\n")[0] ?? "")} before closing`);
  }
  t.ok(answers.length > 0, `${answers.length} normal requests sent meanwhile`);
  t.same(answers.filter((a) => a.status !== 200), [], "every normal request answered 200");
  t.ok(answers.some((a) => a.slowOpen === all.length), "normal requests were answered while every slow connection was still open");
});

t.test("connections beyond --max-connections are closed at once; the others stay, and the server answers again once they go", { timeout: 60_000 }, async (t) => {
  const { app, url } = await startServer(t, { maxConnections: 6, maxConnectionsPerClient: 0, headersTimeoutMs: 60_000 });
  const held = await Promise.all(Array.from({ length: 6 }, () => rawClient(portOf(url), "")));
  await serverConnections(app, 6);
  const extra = await rawClient(portOf(url), "");
  t.equal(await closedByServer(extra), "", "the 7th connection is closed without an answer");
  t.ok(held.every((c) => c.isOpen()), "the 6 held connections are still open");
  for (const c of held) c.socket.destroy();
  await serverConnections(app, 0);
  t.equal((await request(`${url}/health`)).status, 200);
});

t.test("connections from one client beyond --max-connections-per-client are closed at once", { timeout: 60_000 }, async (t) => {
  const { app, url } = await startServer(t, { maxConnections: 100, maxConnectionsPerClient: 3, headersTimeoutMs: 60_000 });
  const held = await Promise.all(Array.from({ length: 3 }, () => rawClient(portOf(url), "")));
  await serverConnections(app, 3);
  const extra = await rawClient(portOf(url), "");
  t.equal(await closedByServer(extra), "", "the 4th connection from 127.0.0.1 is closed without an answer");
  t.ok(held.every((c) => c.isOpen()), "the 3 held connections are still open");
  held[0].socket.destroy();
  await serverConnections(app, 2);
  t.equal((await request(`${url}/health`)).status, 200, "with one closed, the client is served again");
  for (const c of held) c.socket.destroy();
});
