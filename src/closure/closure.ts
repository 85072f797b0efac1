import type { StorePath } from './store-path.js';

/** One realised store path with what Nix knows of it. narHash is normalised to SRI `sha256-<base64>`. */
export interface PathInfo {
  readonly path: StorePath;
  readonly narHash: string;
  readonly narSize: number;
  readonly references: readonly StorePath[];
}

/**
 * A closed set of store paths: every reference of every path is in `paths`. `roots` are the
 * top-level paths the user asked for (the graph's entry points), in the order given.
 */
export interface Closure {
  readonly storeDir: string;
  readonly roots: readonly StorePath[];
  readonly paths: ReadonlyMap<StorePath, PathInfo>;
}
