import { z } from 'zod';

// Numbers from Nix are byte counts: non-negative safe integers (a NAR larger than 2^53 is not real).
const size = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** One entry as `exportReferencesGraph` (structured attrs) and old `nix path-info --json` write it. */
export const graphEntrySchema = z.object({
  path: z.string(),
  narHash: z.string(),
  narSize: size,
  references: z.array(z.string()),
  closureSize: size.optional(),
  valid: z.boolean().optional(),
});

/** `nix path-info --json` of Nix ≥ 2.19: an object keyed by store path (null for invalid paths). */
export const pathInfoObjectSchema = z.record(
  z.string(),
  z
    .object({
      narHash: z.string(),
      narSize: size,
      references: z.array(z.string()),
    })
    .passthrough()
    .nullable(),
);

export const graphEntriesSchema = z.array(graphEntrySchema);
export const plainPathsSchema = z.array(z.string());

/**
 * The graph file nixoci's own `nix/closure-graph.nix` writes (and any structured-attrs JSON): an
 * object with the entries under some key, and optionally the roots.
 */
export const wrappedGraphSchema = z
  .object({
    roots: z.array(z.string()).optional(),
  })
  .passthrough();

export type GraphEntry = z.infer<typeof graphEntrySchema>;
