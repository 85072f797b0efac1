/** The Nix system an image architecture runs (Nix's name for linux/amd64 and linux/arm64). */
export type NixSystem = 'x86_64-linux' | 'aarch64-linux';

export type ImageArch = 'amd64' | 'arm64';

const SYSTEMS: Readonly<Record<ImageArch, NixSystem>> = { amd64: 'x86_64-linux', arm64: 'aarch64-linux' };

export const nixSystem = (arch: ImageArch): NixSystem => SYSTEMS[arch];

/** The image architecture of a Nix system, if it is one nixoci builds. */
export const archOfSystem = (system: string): ImageArch | undefined =>
  (Object.keys(SYSTEMS) as ImageArch[]).find((a) => SYSTEMS[a] === system);
