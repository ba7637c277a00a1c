/**
 * Modules in shared memory: posted to the engine's threads, their arrays are shared rather than
 * copied, so laying out a route after a swap does not copy every module it fuses (and leaves the
 * other thread no copies to collect). The library keeps each module it loads in this form only,
 * so a module's weights exist once in the process, whichever threads read them.
 */
const sharedForms = new WeakMap<object, unknown>();

/** The module with every float32 tensor in a SharedArrayBuffer: itself if it already is, else a copy made once. */
export function inSharedMemory<T extends object>(module: T): T {
  let form = sharedForms.get(module);
  if (!form) {
    form = share(module);
    sharedForms.set(module, form);
    sharedForms.set(form as object, form);
  }
  return form as T;
}

function share(value: unknown): unknown {
  if (value instanceof Float32Array) {
    if (value.buffer instanceof SharedArrayBuffer) return value;
    const copy = new Float32Array(new SharedArrayBuffer(value.byteLength));
    copy.set(value);
    return copy;
  }
  // Modules hold float32 tensors only; anything else would silently become a plain object below.
  if (ArrayBuffer.isView(value)) throw new Error(`cannot share a ${value.constructor.name} with the engine's threads`);
  if (Array.isArray(value)) return value.map(share);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([key, v]) => [key, share(v)]));
  return value;
}

/** Bytes of the tensors a module holds (each array counted once). */
export function tensorBytes(value: unknown, seen = new Set<ArrayBufferLike>()): number {
  if (ArrayBuffer.isView(value)) {
    if (seen.has(value.buffer)) return 0;
    seen.add(value.buffer);
    return value.buffer.byteLength;
  }
  if (Array.isArray(value)) return value.reduce((sum: number, v) => sum + tensorBytes(v, seen), 0);
  if (value !== null && typeof value === "object") return Object.values(value).reduce((sum: number, v) => sum + tensorBytes(v, seen), 0);
  return 0;
}
