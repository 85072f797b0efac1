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
  tags: z.array(z.string()).optional(),
  /** Engines: the image ID, as `docker images` shows it. */
  imageId: digest.optional(),
  /** What --digestfile writes: manifest (index) digest, an engine's image ID, a docker-archive's config digest. */
  digest,
  /** What --image-refs writes: `HOST/REPO@sha256:…`, `oci:DIR:TAG@sha256:…`, … */
  imageRef: z.string(),
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

/** `inspect SOURCE --json`: the layer plan of a closure (no file read). */
export const inspectPlanReportSchema = z.object({
  schemaVersion: z.literal(1),
  command: z.literal('inspect'),
  compression: z.enum(['none', 'gzip', 'zstd']),
  plans: z.array(
    z
      .object({
        architecture: z.string(),
        planVersion: z.number().int(),
        layers: z.array(
          z.object({
            index: z.number().int().nonnegative(),
            storePaths: z.array(z.string()),
            narHashes: z.array(z.string()),
            narSize: z.number().int().nonnegative(),
            cached: z
              .object({ diffId: digest, digest, size: z.number().int(), tarSize: z.number().int() })
              .nullable(),
          }),
        ),
      })
      .passthrough(), // devbox sources add `packages` and `excluded`
  ),
});

/** One layer of an existing image, as `inspect IMAGE` and `diff` read it. */
export const imageLayerSchema = z.object({
  index: z.number().int().nonnegative(),
  /** The blob's digest; null only for a compressed docker-archive entry not named by digest. */
  digest: digest.nullable(),
  diffId: digest,
  size: z.number().int().nonnegative(),
  mediaType: z.string(),
  storePaths: z.array(z.string()),
  storePathsFrom: z.enum(['annotation', 'history', 'none']),
  createdBy: z.string().nullable(),
});

/**
 * The config's run-time `config` as the image has it: the settings inspect shows, typed as the
 * image spec has them (a Docker config writes null for an unset list), and any others as written.
 */
export const runConfigSchema = z
  .object({
    Entrypoint: z.array(z.string()).nullable().optional(),
    Cmd: z.array(z.string()).nullable().optional(),
    Env: z.array(z.string()).nullable().optional(),
    WorkingDir: z.string().optional(),
    User: z.string().optional(),
    ExposedPorts: z.record(z.object({})).nullable().optional(),
    Volumes: z.record(z.object({})).nullable().optional(),
    StopSignal: z.string().optional(),
    Labels: z.record(z.string()).nullable().optional(),
  })
  .passthrough();

export const imageSummarySchema = z.object({
  reference: z.string(),
  manifestDigest: digest.nullable(),
  indexDigest: digest.nullable(),
  mediaType: z.string().nullable(),
  configDigest: digest,
  architecture: z.string().nullable(),
  os: z.string().nullable(),
  variant: z.string().nullable(),
  created: z.string().nullable(),
  runConfig: runConfigSchema.nullable(),
  annotations: z.record(z.string()),
  indexAnnotations: z.record(z.string()).nullable(),
  /** The platforms of the index the reference named (`linux/arm64/v8`), in its order; null without one. */
  indexPlatforms: z.array(z.string()).nullable(),
  layerCount: z.number().int().nonnegative(),
  totalSize: z.number().int().nonnegative(),
});

/** `inspect IMAGE --json`. */
export const inspectImageReportSchema = z.object({
  schemaVersion: z.literal(1),
  command: z.literal('inspect'),
  image: imageSummarySchema.extend({ layers: z.array(imageLayerSchema) }),
});

const pathRef = z.object({
  path: z.string(),
  layer: z.number().int().nonnegative(),
  layerSize: z.number().int().nonnegative(),
});

/** `diff A B --json`. */
export const diffReportSchema = z.object({
  schemaVersion: z.literal(1),
  command: z.literal('diff'),
  a: imageSummarySchema,
  b: imageSummarySchema,
  shared: z.array(
    z.object({
      diffId: digest,
      indexA: z.number().int().nonnegative(),
      indexB: z.number().int().nonnegative(),
      sizeA: z.number().int().nonnegative(),
      sizeB: z.number().int().nonnegative(),
      storePaths: z.array(z.string()),
    }),
  ),
  onlyA: z.array(imageLayerSchema),
  onlyB: z.array(imageLayerSchema),
  storePaths: z.object({
    added: z.array(pathRef),
    removed: z.array(pathRef),
    changed: z.array(z.object({ name: z.string(), from: pathRef, to: pathRef })),
    unchanged: z.number().int().nonnegative(),
  }),
  sizes: z.object({
    a: z.number().int().nonnegative(),
    b: z.number().int().nonnegative(),
    shared: z.number().int().nonnegative(),
    sharedA: z.number().int().nonnegative(),
    onlyA: z.number().int().nonnegative(),
    onlyB: z.number().int().nonnegative(),
  }),
});

export type InspectImageJson = z.infer<typeof inspectImageReportSchema>;
export type DiffReportJson = z.infer<typeof diffReportSchema>;
