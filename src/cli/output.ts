import type { TargetResult } from '../image/target.js';
import { destinationDigest, imageRef } from './result-files.js';

export const JSON_SCHEMA_VERSION = 1;

/** The CLI's view of the terminal: the library never writes to stdout/stderr itself. */
export interface Io {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  readonly isTTY: boolean;
}

/** The signals that stop a run (winding it down) and that the terminal's progress bars clear on. */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export const processIo: Io = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  isTTY: Boolean(process.stderr.isTTY),
};

/** The `--json` report of a command that wrote images: versioned and stable for CI scripts. */
export function jsonReport(command: string, results: readonly TargetResult[], bytesRead: number): unknown {
  const first = results[0];
  return {
    schemaVersion: JSON_SCHEMA_VERSION,
    command,
    manifestDigest: first?.manifestDigest ?? null,
    bytesRead,
    layers: first?.images[0]?.layers ?? [],
    // what --digestfile and --image-refs write for each destination
    targets: results.map((r) => ({ ...r, digest: destinationDigest(r), imageRef: imageRef(r) })),
  };
}

export function humanSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  // a rate is a fraction of bytes; a number that rounds up to 1024 is shown in the next unit
  const shown = (): number => (i === 0 ? Math.round(v) : Math.round(v * 10) / 10);
  while (shown() >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${shown()} B` : `${shown().toFixed(1)} ${units[i]}`;
}

/**
 * A short human summary of a target's result, one line per image, with the bytes writing this
 * target read from the store: on its one line, or after several images on a line of its own with
 * the index's digest (the images of an index share layers, and the reads are not told apart by
 * image); then the tags the image got besides the target's own, the target's notes, one a line,
 * and `run`, the command that runs the image, when given.
 */
export function summary(r: TargetResult, bytesRead: number, run?: string): string[] {
  const read = `${humanSize(bytesRead)} read from the store`;
  const lines = r.images.map((img) => {
    const counts = new Map<string, number>();
    for (const l of img.layers) counts.set(l.action, (counts.get(l.action) ?? 0) + 1);
    const sent = img.layers.reduce((n, l) => n + l.bytesSent, 0);
    const acts = [...counts].map(([a, n]) => `${n} ${a}`).join(', ');
    // an engine shows the image by its ID (`docker images`), never by a manifest digest
    const id = r.imageId ? `image ID ${r.imageId}` : img.manifestDigest;
    const line = `${r.target} (${img.architecture}): ${id} — ${img.layers.length} layer${img.layers.length === 1 ? '' : 's'} (${acts}), ${humanSize(sent)} written`;
    return r.images.length === 1 ? `${line}, ${read}` : line;
  });
  // the index is what the tag points at, and what a deployment pins: say its digest too
  const all = r.images.length === 1 ? lines : [...lines, `${r.target}: index ${r.manifestDigest}, ${read}`];
  // --tag: the other names the image now has, which the target's own name does not tell
  // (a pinned `REPO:TAG@sha256:…` names its tag before the digest)
  const named = r.target.replace(/@sha256:[0-9a-f]{64}$/, '');
  const others = (r.tags ?? []).filter((t) => !named.endsWith(`/${t}`) && !named.endsWith(`:${t}`));
  const tagged = others.length > 0 ? [`${r.target}: also tagged ${others.join(', ')}`] : [];
  // e.g. that an engine got one platform of several: not for --json readers only
  const runIt = run ? [`${r.target}: run it with: ${run}`] : [];
  return [...all, ...tagged, ...r.notes.map((n) => `${r.target}: ${n}`), ...runIt];
}
