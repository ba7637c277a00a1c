import { rm } from "node:fs/promises";
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import type { IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FastifyRequest } from "fastify";
import { BadRequestError, PayloadTooLargeError, ServingError } from "../../errors.js";
import { ADAPTERHUB_FILES } from "../../library/adapterhub.js";

/**
 * Non-file fields are no part of a save directory and are skipped, but each is held in memory
 * while it is read: at most this many, each cut at FIELD_BYTES, so they cost at most 1 MiB.
 */
const MAX_FIELDS = 16;
const FIELD_BYTES = 64 * 1024;
const FIELDS_MESSAGE = `the upload has more than ${MAX_FIELDS} non-file fields; a save directory is sent as files`;

/** Non-file fields the parser has read so far. */
const fieldCount = (fields: Record<string, unknown> | undefined) => Object.values(fields ?? {}).filter((f) => (f as { type?: string } | undefined)?.type === "field").length;

/**
 * Streams a multipart upload of an AdapterHub save directory into `dir`, an empty folder.
 * The caller owns the folder and must call `dispose`, which removes it.
 */
export async function receiveUpload(request: FastifyRequest, maxBytes: number, dir: string): Promise<{ dir: string; dispose: () => Promise<void> }> {
  const dispose = () => rm(dir, { recursive: true, force: true });
  // A body that ends (by its Content-Length) without the closing boundary leaves the multipart
  // parser waiting for a part that never ends: the end of the body is watched here instead.
  let current: Readable | undefined;
  const truncated = new Promise<never>((_, reject) =>
    watchClosingBoundary(request.raw, () => {
      const err = new BadRequestError("malformed_upload", "the multipart/form-data body ended without its closing boundary");
      current?.destroy(err);
      reject(err);
    }),
  );
  truncated.catch(() => undefined);
  let fields: Record<string, unknown> | undefined;
  const parts = request.files({ limits: { fileSize: maxBytes, files: ADAPTERHUB_FILES.size, fields: MAX_FIELDS, fieldSize: FIELD_BYTES } })[Symbol.asyncIterator]();
  try {
    let count = 0;
    for (;;) {
      const next = await Promise.race([parts.next(), truncated]);
      if (next.done) break;
      const part = next.value;
      fields = part.fields;
      // Past the field limit the parser stops reading the body, and may never end the iteration: refuse at once.
      if (fieldCount(fields) >= MAX_FIELDS) throw new PayloadTooLargeError(FIELDS_MESSAGE);
      if (!ADAPTERHUB_FILES.has(part.filename)) {
        part.file.resume();
        throw new BadRequestError(
          "unexpected_file",
          `'${part.filename}' is not a file of an AdapterHub save directory (expected one of ${[...ADAPTERHUB_FILES].join(", ")})`,
        );
      }
      current = part.file;
      await pipeline(part.file, createWriteStream(join(dir, part.filename)));
      current = undefined;
      if (part.file.truncated) throw new PayloadTooLargeError(`'${part.filename}' exceeds the upload limit of ${maxBytes} bytes`);
      count++;
    }
    if (count === 0) throw new BadRequestError("empty_upload", "the upload contains no files");
    return { dir, dispose };
  } catch (caught) {
    await dispose();
    const err = caught;
    // The field limit, hit while a file is written, ends that file early; the fields read show it.
    const code = fieldCount(fields) >= MAX_FIELDS ? "FST_FIELDS_LIMIT" : (err as { code?: string }).code;
    if (code === "FST_REQ_FILE_TOO_LARGE") {
      throw new PayloadTooLargeError(`an uploaded file exceeds the upload limit of ${maxBytes} bytes`);
    }
    if (code === "FST_FIELDS_LIMIT") {
      throw new PayloadTooLargeError(FIELDS_MESSAGE);
    }
    // The multipart parser's own errors (no boundary, a truncated form, a malformed part header)
    // carry neither a status nor a system call: the client sent a broken form.
    if (err instanceof Error && !(err instanceof ServingError) && !("statusCode" in err) && !("syscall" in err)) {
      throw new BadRequestError("malformed_upload", `the multipart/form-data body cannot be read: ${err.message}`);
    }
    throw err;
  }
}

/** Calls `truncated` when the request's body has ended without the multipart closing delimiter. */
function watchClosingBoundary(raw: IncomingMessage, truncated: () => void): void {
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(raw.headers["content-type"] ?? "");
  if (!boundary) return; // the parser refuses a form without one
  const closing = Buffer.from(`--${boundary[1] ?? boundary[2]}--`);
  let tail = Buffer.alloc(0);
  let closed = false;
  const onData = (chunk: Buffer) => {
    if (closed) return;
    // The delimiter may straddle two chunks: search the end of the previous one with this one.
    const window = Buffer.concat([tail, chunk]);
    closed = window.includes(closing);
    tail = window.subarray(Math.max(0, window.length - closing.length + 1));
  };
  raw.on("data", onData);
  raw.once("end", () => {
    raw.off("data", onData);
    if (!closed) truncated();
  });
}
