import type { AdapterLibrary } from "../library/library.js";
import type { Log } from "./log.js";

/**
 * A replica follows its shared store: the manifest is checked every `pollMs` and what changed is
 * published. A change this replica cannot load is logged once, when it starts failing (or fails
 * differently), and tried again at every poll; /ready and `library_in_sync` say so meanwhile.
 * Returns the function that stops following.
 */
export function followStore(library: AdapterLibrary, pollMs: number, log: Log): () => void {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let lastError: string | undefined;
  const poll = async () => {
    const started = Date.now();
    const routes = await library.refresh();
    const { inSync, error, etag } = library.sync;
    if (!inSync && error !== lastError) log.warn({ library: library.location, error }, "library out of sync: still serving the previous manifest; retrying");
    if (inSync && lastError !== undefined) log.info({ library: library.location, etag }, "library back in sync");
    if (routes.length > 0) log.info({ library: library.location, etag, routes }, "library changed by another replica: published");
    lastError = inSync ? undefined : error;
    // Polls start every pollMs, however long the last one took, so a change is seen within one interval of its write.
    if (!stopped) timer = setTimeout(poll, Math.max(0, pollMs - (Date.now() - started)));
  };
  timer = setTimeout(poll, pollMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
