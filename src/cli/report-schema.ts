import { z } from 'zod';

/**
 * The `--json` report of build, push and load, version 1. Documented in docs/json.md; tests
 * validate every report against this schema. Fields may be added in a minor release; removing or
 * changing one bumps `schemaVersion`.
 */
const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/);

export const layerReportSchema = z.object({
  storePaths: z.array(z.string()),
  diffId: digest,
  digest,
  size: z.number().int().nonnegative(),
  mediaType: z.string(),
  action: z.enum(['written', 'skipped', 'uploaded', 'mounted', 'reused', 'sent', 'omitted']),
  bytesSent: z.number().int().nonnegative(),
});

export const targetResultSchema = z.object({
  target: z.string(),
  manifestDigest: digest,
  images: z.array(
    z.object({
      architecture: z.string(),
      manifestDigest: digest,
      configDigest: digest,
      layers: z.array(layerReportSchema),
    }),
  ),
  notes: z.array(z.string()),
});

export const imageReportSchema = z.object({
  schemaVersion: z.literal(1),
  command: z.string(),
  manifestDigest: digest.nullable(),
  bytesRead: z.number().int().nonnegative(),
  layers: z.array(layerReportSchema),
  targets: z.array(targetResultSchema),
});

export type ImageReportJson = z.infer<typeof imageReportSchema>;
