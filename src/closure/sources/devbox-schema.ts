import { z } from 'zod';

/** What a union says when its value fits none of its forms (zod says only "Invalid input"). */
const fits = (message: string): z.RawCreateParams => ({ errorMap: () => ({ message }) });

/** A package in devbox.json's object form: a version string, or the full object. */
const packageObjectSchema = z.union(
  [
    z.string(),
    z
      .object({
        version: z.string().optional(),
        platforms: z.array(z.string()).optional(),
        excluded_platforms: z.array(z.string()).optional(),
        outputs: z.array(z.string()).optional(),
      })
      .passthrough(),
  ],
  fits('expected a version string, or an object with version, platforms, excluded_platforms, outputs'),
);

const stringOrLines = z.union(
  [z.string(), z.array(z.string())],
  fits('expected a string, or a list of strings (one per line)'),
);

/** devbox.json: only what an image needs; unknown keys (include, nixpkgs, …) are ignored. */
export const devboxJsonSchema = z
  .object({
    packages: z
      .union(
        [z.array(z.string()), z.record(z.string(), packageObjectSchema)],
        fits('expected a list of "name@version" strings, or an object of name: version'),
      )
      .optional(),
    env: z.record(z.string(), z.string()).optional(),
    shell: z
      .object({
        init_hook: stringOrLines.optional(),
        scripts: z.record(z.string(), stringOrLines).optional(),
      })
      .passthrough()
      .optional(),
  })
  .passthrough();

const lockOutputSchema = z
  .object({
    name: z.string(),
    path: z.string(),
    default: z.boolean().optional(),
  })
  .passthrough();

const lockSystemSchema = z
  .object({
    outputs: z.array(lockOutputSchema).optional(),
    // Lockfiles written before per-output paths: one store path per system.
    store_path: z.string().optional(),
  })
  .passthrough();

export const lockPackageSchema = z
  .object({
    resolved: z.string().optional(),
    version: z.string().optional(),
    source: z.string().optional(),
    systems: z.record(z.string(), lockSystemSchema).optional(),
  })
  .passthrough();

/** The lockfile versions this reader understands. */
export const LOCKFILE_VERSIONS = ['1'] as const;

export const devboxLockSchema = z
  .object({
    lockfile_version: z.string(),
    packages: z.record(z.string(), lockPackageSchema).default({}),
  })
  .passthrough();

export type DevboxJson = z.infer<typeof devboxJsonSchema>;
export type DevboxLock = z.infer<typeof devboxLockSchema>;
export type LockPackage = z.infer<typeof lockPackageSchema>;
