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

/** A hash in Nix's newer JSON formats: a string, or `{ algorithm, format, hash }`. */
const nixHash = z.union(
  [
    z.string(),
    z.object({ algorithm: z.string(), format: z.string().optional(), hash: z.string() }).passthrough(),
  ],
  // zod says only "Invalid input" when a value fits no branch
  { errorMap: () => ({ message: 'expected a hash string, or an object with algorithm, format, hash' }) },
);

/**
 * `nix path-info --json --json-format 2` (Nix ≥ 2.33): `{ version: 2, storeDir, info }`, `info`
 * keyed by store path base names, references as base names too.
 */
export const pathInfoV2Schema = z
  .object({
    version: z.literal(2),
    storeDir: z.string(),
    info: z.record(
      z.string(),
      z
        .object({ narHash: nixHash, narSize: size, references: z.array(z.string()) })
        .passthrough()
        .nullable(),
    ),
  })
  .passthrough();

/** A hash of the v2 format as the strings graph entries hold (SRI, or ALGO:DIGEST). */
export function hashString(h: z.infer<typeof nixHash>): string {
  if (typeof h === 'string') return h;
  if (h.format === 'sri') return h.hash;
  if (h.format === 'base64') return `${h.algorithm}-${h.hash}`;
  return `${h.algorithm}:${h.hash}`; // nix32 (base32) or base16: told apart by length
}

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
