import { rm } from "node:fs/promises";
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { FastifyRequest } from "fastify";
import { BadRequestError, PayloadTooLargeError, ServingError } from "../../errors.js";

/**
 * The only file names an AdapterHub save directory holds, weights as safetensors or as PyTorch
 * .bin (read without running code: library/torch-pickle.ts); anything else in an upload is refused.
 */
export const ADAPTERHUB_FILES = new Set([
  "adapter_config.json",
  "adapter.safetensors",
  "pytorch_adapter.bin",
  "adapter_fusion_config.json",
  "model_adapter_fusion.safetensors",
  "pytorch_model_adapter_fusion.bin",
  "head_config.json",
  "model_head.safetensors",
  "pytorch_model_head.bin",
]);

/**
 * Streams a multipart upload of an AdapterHub save directory into `dir`, an empty folder.
 * The caller owns the folder and must call `dispose`, which removes it.
 */
export async function receiveUpload(request: FastifyRequest, maxBytes: number, dir: string): Promise<{ dir: string; dispose: () => Promise<void> }> {
  const dispose = () => rm(dir, { recursive: true, force: true });
  try {
    let count = 0;
    for await (const part of request.files({ limits: { fileSize: maxBytes, files: ADAPTERHUB_FILES.size } })) {
      if (!ADAPTERHUB_FILES.has(part.filename)) {
        part.file.resume();
        throw new BadRequestError(
          "unexpected_file",
          `'${part.filename}' is not a file of an AdapterHub save directory (expected one of ${[...ADAPTERHUB_FILES].join(", ")})`,
        );
      }
      await pipeline(part.file, createWriteStream(join(dir, part.filename)));
      if (part.file.truncated) throw new PayloadTooLargeError(`'${part.filename}' exceeds the upload limit of ${maxBytes} bytes`);
      count++;
    }
    if (count === 0) throw new BadRequestError("empty_upload", "the upload contains no files");
    return { dir, dispose };
  } catch (err) {
    await dispose();
    if ((err as { code?: string }).code === "FST_REQ_FILE_TOO_LARGE") {
      throw new PayloadTooLargeError(`an uploaded file exceeds the upload limit of ${maxBytes} bytes`);
    }
    // The multipart parser's own errors (no boundary, a truncated form, a malformed part header)
    // carry neither a status nor a system call: the client sent a broken form.
    if (err instanceof Error && !(err instanceof ServingError) && !("statusCode" in err) && !("syscall" in err)) {
      throw new BadRequestError("malformed_upload", `the multipart/form-data body cannot be read: ${err.message}`);
    }
    throw err;
  }
}
