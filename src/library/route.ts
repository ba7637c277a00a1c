import { createHash } from "node:crypto";
import type { PredictionHead } from "../engine/heads.js";
import type { ServedRoute } from "../engine/weights.js";
import type { AdapterModule, FusionModule } from "./adapterhub.js";

/**
 * What one route serves, frozen at the moment it was assembled: its adapters, its fusion (none for
 * a single-adapter route) and its head. A hot swap builds a new FusionRoute and replaces the
 * reference; inputs admitted with the old one finish on it. How the engine lays these modules out
 * is the engine's own business (engine/layout.ts).
 */
export interface FusionRoute extends ServedRoute {
  readonly name: string;
  readonly kind: "fusion" | "adapter";
  readonly version: string;
  readonly adapters: readonly AdapterModule[];
  readonly fusion: FusionModule | null;
  readonly head: PredictionHead;
}

export function assembleRoute(name: string, adapters: readonly AdapterModule[], fusion: FusionModule | null, head: PredictionHead): FusionRoute {
  const version = createHash("sha256")
    .update(JSON.stringify([adapters.map((a) => a.version), fusion?.version ?? null]))
    .digest("hex")
    .slice(0, 12);
  return { name, kind: fusion ? "fusion" : "adapter", version, adapters, fusion, head };
}
