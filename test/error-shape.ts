import type { Test } from "tap";
import { errorSchema } from "../src/server/errors.js";
import type { Answer } from "./server/harness.js";

/**
 * Every error answer the tests look at goes through here: it must have the status expected, a
 * JSON body of the one error shape (the OpenAPI document's Error schema: exactly `error` and
 * `message`, both strings), and the code and message when they are given.
 */
export function assertError(t: Test, answer: Answer, status: number, code?: string, message?: RegExp | string): void {
  const what = `${status}${code ? ` ${code}` : ""}`;
  t.equal(answer.status, status, `${what}: status (${answer.text.slice(0, 200)})`);
  t.match(answer.headers.get("content-type") ?? "", /^application\/json/, `${what}: a JSON body`);
  t.ok(matchesErrorSchema(answer.body), `${what}: the body matches the Error schema: ${answer.text.slice(0, 200)}`);
  if (code !== undefined) t.equal(answer.body?.error, code, `${what}: code`);
  if (message !== undefined) t.match(answer.body?.message, message, `${what}: message`);
}

export function matchesErrorSchema(body: unknown): boolean {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return false;
  const keys = Object.keys(body).sort();
  const allowed = Object.keys(errorSchema.properties).sort();
  return (
    errorSchema.required.every((key) => key in body) &&
    keys.every((key) => allowed.includes(key)) &&
    keys.every((key) => typeof (body as Record<string, unknown>)[key] === errorSchema.properties[key as keyof typeof errorSchema.properties].type)
  );
}
