import { linkTarget } from '../core/follow-links.js';
import { closeSync, constants, fstatSync, openSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { atomicWrite } from '../core/atomic-write.js';
import type { Digest } from '../core/digest.js';
import { dirProblem, statOrMissing } from '../core/dir-problem.js';
import { NixociError, reason } from '../core/errors.js';
import type { TargetResult } from '../image/target.js';
import type { Compression } from '../layer/compress.js';
import { DockerArchiveTarget } from '../registry/docker-archive-target.js';
import { parseReference } from '../registry/reference.js';
import { usage, type OptionSpec } from './flags.js';
import type { Io } from './output.js';
import type { TargetChoice, TargetFlags } from './targets.js';

/**
 * `--digestfile FILE` (skopeo's: the digest, no newline) and `--image-refs FILE` (ko's: one
 * `REFERENCE@sha256:…` a line, one line per destination), written once every destination is.
 */
export const resultFileOptions = {
  digestfile: { type: 'string' },
  'image-refs': { type: 'string' },
} as const satisfies OptionSpec;

const FLAGS = ['digestfile', 'image-refs'] as const;

/**
 * What --digestfile writes for a destination: the digest its tag points at (the manifest, or the
 * index of several platforms) for a registry or an OCI layout; the image ID for an engine (as
 * `docker image inspect` shows it); the config digest for a docker-archive, the ID `docker load`
 * gives it (the archive keeps no manifest). docs/design-choices.md says why.
 */
export function destinationDigest(r: TargetResult): Digest {
  if (r.imageId) return r.imageId;
  if (r.target.startsWith('docker-archive:')) return r.images[0]!.configDigest;
  return r.manifestDigest;
}

/**
 * The destination pinned to its digest: `HOST/REPO@sha256:…` for a registry (as ko, crane and
 * cosign take it), else the destination as named (`oci:DIR:TAG`, `docker-daemon:NAME:TAG`,
 * `docker-archive:FILE`) with `@` and destinationDigest().
 */
export function imageRef(r: TargetResult): string {
  const digest = destinationDigest(r);
  if (r.target.startsWith('docker://')) {
    const ref = parseReference(r.target);
    return `${ref.registry}/${ref.repository}@${digest}`;
  }
  return `${r.target}@${digest}`;
}

/**
 * Which digest a destination gets, known from the flags alone: destinations of one key get the
 * same digest. Registries and layouts: the manifest (or index), which depends on the layers'
 * compression; a docker-archive: the config digest; an engine: its own image ID (the containerd
 * image store names an image by a manifest the engine writes itself).
 */
function digestKind(t: TargetChoice, compression: Compression | undefined, arches: number): [string, string] {
  if (t.target.keepsManifest) {
    const c = t.target.requiredCompression ?? compression ?? t.defaultCompression;
    const layers = c === 'none' ? 'uncompressed' : c;
    return [`manifest/${c}`, `the ${arches > 1 ? 'index' : 'manifest'} digest with ${layers} layers`];
  }
  if (t.target instanceof DockerArchiveTarget) return ['config', 'the config digest (its image ID)'];
  const engine = t.target.description.startsWith('podman') ? 'Podman' : 'the Docker engine';
  return [`engine/${engine}`, `the image ID ${engine} gives it`];
}

/** `/dev/stdout`, `/dev/fd/N`, `/proc/self/fd/N`: the file descriptor it names, else undefined. */
function fdOf(file: string): number | undefined {
  if (file === '/dev/stdout') return 1;
  if (file === '/dev/stderr') return 2;
  const m = /^\/(?:dev|proc\/self)\/fd\/(\d+)$/.exec(file);
  return m ? Number(m[1]) : undefined;
}

/**
 * Checks --digestfile and --image-refs before anything is read: destinations that would get
 * different digests (one file holds one), a directory, a missing directory, a descriptor that is
 * not open, standard output that the archive or the --json report has.
 */
export function checkResultFiles(
  command: string,
  v: TargetFlags,
  targets: readonly TargetChoice[],
  compression: Compression | undefined,
  arches: number,
): void {
  const digestFile = v.digestfile;
  if (typeof digestFile === 'string' && targets.length > 1) {
    const kinds = targets.map((t) => digestKind(t, compression, arches));
    const other = kinds.findIndex(([key]) => key !== kinds[0]![0]);
    if (other >= 0) {
      const manifests = kinds[0]![0].startsWith('manifest/') && kinds[other]![0].startsWith('manifest/');
      throw new NixociError(
        'USAGE',
        `nixoci ${command}: --digestfile holds one digest, and the destinations get different ones: ${targets[0]!.target.description} gets ${kinds[0]![1]}, ${targets[other]!.target.description} ${kinds[other]![1]}`,
        {
          hint: manifests
            ? 'give --compression gzip (or zstd) so that both get the same layers, or run them separately, each with its own --digestfile'
            : 'run them separately, each with its own --digestfile (--image-refs takes every destination)',
        },
      );
    }
  }
  const files: string[] = [];
  for (const flag of FLAGS) {
    const file = v[flag];
    if (typeof file !== 'string') continue;
    const fd = fdOf(file);
    if (fd === 1 && v.json)
      throw usage(
        command,
        `--${flag} ${file}: --json prints its report on standard output; give another file`,
      );
    if (fd === 1 && targets.some((t) => t.target.description.startsWith('docker-archive:-')))
      throw usage(
        command,
        `--${flag} ${file}: standard output carries the docker-archive; give another file`,
      );
    if (fd !== undefined) {
      try {
        fstatSync(fd);
      } catch {
        throw usage(
          command,
          `--${flag} ${file}: file descriptor ${fd} is not open (redirect it, e.g. ${fd}>FILE)`,
        );
      }
      continue;
    }
    const path = linkTarget(file) ?? file; // a loop: the write says ELOOP
    const st = statOrMissing(path);
    if (typeof st === 'object' && st.isDirectory())
      throw usage(command, `--${flag} ${file}: ${path} is a directory; give a file name`);
    if (typeof st === 'object' && !st.isFile()) continue; // a FIFO, a device: written into
    const problem = dirProblem(dirname(path), false);
    if (problem) throw usage(command, `--${flag} ${file}: ${problem}`);
    if (files.includes(path))
      throw usage(command, `--digestfile and --image-refs name the same file ${path}; give two files`);
    files.push(path);
  }
}

/**
 * Writes --digestfile and --image-refs after every destination was written. A regular file is
 * replaced at once (keeping its mode); standard output and error are the process's own streams (a
 * redirected file is appended to); a FIFO, a device or another /dev/fd/N is written into, waiting
 * for a FIFO's reader until Ctrl-C.
 */
export async function writeResultFiles(
  v: TargetFlags,
  results: readonly TargetResult[],
  io: Io,
  signal: AbortSignal,
): Promise<void> {
  const notice = (flag: string, file: string) => (): void => {
    if (!v.quiet) io.err(`nixoci: waiting for a reader of ${file} (--${flag}); Ctrl-C to stop\n`);
  };
  if (typeof v.digestfile === 'string') {
    const digests = [...new Set(results.map(destinationDigest))];
    // checkResultFiles refused destinations of different kinds before anything was written
    if (digests.length !== 1)
      throw new NixociError(
        'INTERNAL',
        `--digestfile: the destinations got different digests: ${digests.join(', ')}`,
      );
    await writeResult(
      'digestfile',
      v.digestfile,
      digests[0]!,
      io,
      signal,
      notice('digestfile', v.digestfile),
    );
  }
  const refs = v['image-refs'];
  if (typeof refs === 'string')
    await writeResult(
      'image-refs',
      refs,
      results.map((r) => `${imageRef(r)}\n`).join(''),
      io,
      signal,
      notice('image-refs', refs),
    );
}

async function writeResult(
  flag: string,
  file: string,
  text: string,
  io: Io,
  signal: AbortSignal,
  notice: () => void,
): Promise<void> {
  try {
    const fd = fdOf(file);
    if (fd === 1) return io.out(text);
    if (fd === 2) return io.err(text);
    if (fd !== undefined) return await writeAll(fd, text, signal);
    const path = linkTarget(file) ?? file; // a loop: the write says ELOOP
    const st = statSync(path, { throwIfNoEntry: false });
    if (st && !st.isFile() && !st.isDirectory()) {
      const out = await openWriter(path, signal, notice);
      try {
        await writeAll(out, text, signal);
      } finally {
        closeSync(out);
      }
      return;
    }
    atomicWrite(path, text);
  } catch (e) {
    if (e instanceof NixociError) throw e;
    if ((e as Error).name === 'AbortError')
      throw new NixociError('ABORTED', `writing --${flag} ${file} was interrupted`);
    throw new NixociError('TARGET_WRITE', `cannot write --${flag} ${file}: ${reason(e)}`, {
      hint: 'every destination was written; the --json report has the digests too',
      cause: e,
    });
  }
}

/**
 * Opens a FIFO or device for writing without blocking: a FIFO with no reader yet (ENXIO) is tried
 * again until one comes, or the run is interrupted (a blocking open could not be).
 */
async function openWriter(path: string, signal: AbortSignal, notice: () => void): Promise<number> {
  for (let told = false; ; told = true) {
    try {
      return openSync(
        path,
        constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY | constants.O_APPEND,
      );
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENXIO') throw e;
    }
    if (!told) notice();
    await sleep(50, undefined, { signal });
  }
}

/** Writes all of `text` to a descriptor that may be non-blocking (a full pipe: EAGAIN, tried again). */
async function writeAll(fd: number, text: string, signal: AbortSignal): Promise<void> {
  const buf = Buffer.from(text);
  for (let off = 0; off < buf.length;) {
    try {
      off += writeSync(fd, buf, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      await sleep(10, undefined, { signal });
    }
  }
}
