import { Agent, request } from "node:http";
import { performance } from "node:perf_hooks";

export interface Answer {
  readonly route: string;
  readonly status: number;
  readonly version: string | undefined;
  /** performance.now() of sending and of the whole answer, ms. */
  readonly sentAt: number;
  readonly doneAt: number;
}

export interface LoadSpec {
  readonly base: string;
  readonly clients: number;
  readonly seconds: number;
  /** Each client's next request: route and texts. */
  readonly next: (client: number, i: number) => { route: string; inputs: string[] };
}

export function post(base: string, path: string, body: unknown, agent: Agent, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      `${base}${path}`,
      { method: path.startsWith("/v1/admin") ? "PUT" : "POST", agent, headers: { "content-type": "application/json", "content-length": payload.length, ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: any;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = text;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

/** Closed loop: `clients` concurrent clients, each sending its next request as soon as the last is answered. */
export async function runLoad(spec: LoadSpec): Promise<Answer[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: spec.clients });
  const answers: Answer[] = [];
  const end = performance.now() + spec.seconds * 1000;
  await Promise.all(
    Array.from({ length: spec.clients }, async (_, client) => {
      for (let i = 0; performance.now() < end; i++) {
        const { route, inputs } = spec.next(client, i);
        const sentAt = performance.now();
        try {
          const { status, body } = await post(spec.base, `/v1/predict/${route}`, { inputs }, agent);
          answers.push({ route, status, version: body?.version, sentAt, doneAt: performance.now() });
        } catch {
          answers.push({ route, status: 0, version: undefined, sentAt, doneAt: performance.now() });
        }
      }
    }),
  );
  agent.destroy();
  return answers;
}

export function latencies(answers: readonly Answer[]): number[] {
  return answers.map((a) => a.doneAt - a.sentAt);
}
