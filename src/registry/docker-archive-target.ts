import { imageReport, writeError } from './target-result.js';
import {
  closeSync,
  constants,
  createWriteStream,
  fstatSync,
  lstatSync,
  openSync,
  realpathSync,
  renameSync,
  statSync,
} from 'node:fs';
import { isatty } from 'node:tty';
import { basename, dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { keepMode, stickyProblem } from '../core/atomic-write.js';
import { digestHex, sha256Digest } from '../core/digest.js';
import { dirProblem, statOrMissing } from '../core/dir-problem.js';
import { NixociError } from '../core/errors.js';
import { removeQuietly } from '../core/remove-quietly.js';
import { removeStaleFiles } from '../core/stale-files.js';
import { tempTag, TEMP_TAG_PATTERN } from '../core/temp-name.js';
import type { Image } from '../image/image.js';
import type { ImageTarget, TargetResult, WriteContext } from '../image/target.js';
import { dockerArchive } from './docker-archive-format.js';

/**
 * A docker-archive file (`docker-archive:FILE[:NAME:TAG]`) for `docker load < FILE`. Written to a
 * temp name beside FILE and renamed when complete, so FILE is never a truncated archive; a FIFO or
 * a device is written into instead, as standard output is.
 */
export class DockerArchiveTarget implements ImageTarget {
  readonly description: string;
  readonly requiredCompression = 'none' as const;

  constructor(
    private readonly file: string,
    private readonly repoTag: string | undefined,
  ) {
    this.description = `docker-archive:${file}${repoTag ? `:${repoTag}` : ''}`;
  }

  check(): void {
    const where = this.where();
    if (where.kind !== 'file') return;
    const { path } = where;
    const st = statOrMissing(path);
    const problem =
      dirProblem(dirname(path), false) ??
      (typeof st === 'object' && st.isDirectory() ? `${path} is a directory` : undefined);
    if (problem)
      throw new NixociError('TARGET_WRITE', `cannot write ${this.description}: ${problem}`, {
        hint: 'give a file in an existing, writable directory',
      });
    // Else found only at the rename, after every layer was built and written.
    const sticky = stickyProblem(path);
    if (sticky)
      throw new NixociError('TARGET_WRITE', `cannot write ${this.description}: ${sticky}`, {
        hint: 'give another file name, or have its owner remove it',
      });
  }

  async write(images: readonly Image[], ctx: WriteContext): Promise<TargetResult> {
    if (images.length !== 1) {
      throw new NixociError('USAGE', `${this.description}: a docker-archive holds one platform`, {
        hint: 'pass a single --arch, or use an oci: layout or a registry for multi-arch images',
      });
    }
    const image = images[0]!;
    const where = this.where();
    if (where.kind === 'stdout') return this.writeStdout(image, ctx);
    if (where.kind === 'special') return this.writeInto(where.path, image, ctx);
    const { path } = where;
    const partial = partialName(basename(path));
    const tmp = join(dirname(path), partial.name(tempTag()));
    // A run killed with SIGKILL could not remove its partial archive; the next run does.
    removeStaleFiles(dirname(path), partial.pattern);
    try {
      const written = await this.streamTo(
        createWriteStream(tmp, { flags: 'wx' }),
        image,
        ctx,
        true,
        (offsets) => {
          keepMode(tmp, path);
          renameSync(tmp, path);
          // Complete and in place: a later destination of this run reads the layers back from here.
          for (const [i, offset] of offsets.entries())
            if (offset !== undefined) image.layers[i]!.keptIn(path, offset);
        },
      );
      return written;
    } catch (e) {
      removeQuietly(tmp);
      throw writeError(
        this.description,
        e,
        'check that the directory exists, is writable and has free space',
      );
    }
  }

  /**
   * Where the archive goes: standard output (`-`); a FIFO, a device (/dev/null) or /dev/stdout,
   * written into as with `-` (renaming a file over it would replace the node itself: /dev/null a
   * regular file, a reader left waiting); else a file, through a symlink the file it names (the
   * link stays).
   */
  private where(): { kind: 'stdout' } | { kind: 'special' | 'file'; path: string } {
    if (this.file === '-') return { kind: 'stdout' };
    const given = resolve(this.file);
    if (isSpecialFile(given)) return { kind: 'special', path: given };
    return { kind: 'file', path: symlinkTarget(given) };
  }

  /**
   * Streams the archive into `dest` and reports it once the archive is complete (`complete` hears
   * where each layer's content starts in it). Standard output is not ended at the end
   * (`end: false`): it stays the process's own.
   */
  private async streamTo(
    dest: NodeJS.WritableStream,
    image: Image,
    ctx: WriteContext,
    end = true,
    complete?: (layerOffsets: readonly (number | undefined)[]) => void,
  ): Promise<TargetResult> {
    const archive = dockerArchive({
      image,
      repoTags: this.repoTag ? [this.repoTag] : [],
      signal: ctx.signal,
    });
    await pipeline(archive.stream, dest, { end, ...(ctx.signal ? { signal: ctx.signal } : {}) });
    const { rendered, layerOffsets } = await archive.result;
    complete?.(layerOffsets);
    return {
      target: this.description,
      manifestDigest: rendered.manifest.digest,
      images: [
        imageReport(image, rendered, (i) => ({ action: 'written', bytesSent: rendered.layers[i]!.size })),
      ],
      notes: [],
    };
  }

  /** Into a FIFO or a device, as it is: like standard output, there is nothing to rename. */
  private async writeInto(file: string, image: Image, ctx: WriteContext): Promise<TargetResult> {
    // As for `-`: a tar archive is not for a terminal (/dev/stdout, /dev/tty on one).
    if (isTerminal(file))
      throw new NixociError('USAGE', `${this.description}: would write a tar archive to a terminal`, {
        hint: 'pipe it (--to docker-archive:- | docker load), or give a file',
      });
    try {
      return await this.streamTo(createWriteStream(file), image, ctx);
    } catch (e) {
      throw writeError(this.description, e, `check what reads ${file}`);
    }
  }

  /**
   * `docker-archive:-`: the archive on standard output, for a pipe into `docker load` (what users of
   * dockerTools.streamLayeredImage do). A pipe cannot be renamed into place: a failure leaves the
   * reader a truncated archive, which `docker load` rejects.
   */
  private async writeStdout(image: Image, ctx: WriteContext): Promise<TargetResult> {
    try {
      return await this.streamTo(process.stdout, image, ctx, false);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EPIPE')
        throw new NixociError(
          'TARGET_WRITE',
          `${this.description}: the reader of standard output went away`,
          {
            hint: 'the command the archive was piped into stopped early; see its own error',
          },
        );
      throw writeError(
        this.description,
        e,
        stdoutIsPipe()
          ? 'check the command the archive is piped into'
          : 'check where standard output goes (free space, a writable file or device)',
      );
    }
  }
}

/** The longest file name Linux file systems take, in bytes. */
const NAME_MAX = 255;

/**
 * The temp name of an archive being written: `NAME.TAG.partial` beside it (TAG is `tempTag()`,
 * `PID.RANDOM`: unguessable, and it names the writer), or, for a name too long to take that
 * suffix, `.nixoci-HASH.TAG.partial` with HASH taken from the name (still one name per file, so a
 * later run finds a killed run's partial archive).
 */
export function partialName(name: string): { name: (tag: string) => string; pattern: RegExp } {
  const suffix = '.4194304.0123456789abcdef.partial'; // the longest PID Linux gives, 64 random bits
  if (Buffer.byteLength(name) + suffix.length <= NAME_MAX) {
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    return {
      name: (tag) => `${name}.${tag}.partial`,
      pattern: new RegExp(`^${escaped}\\.${TEMP_TAG_PATTERN}\\.partial$`),
    };
  }
  const short = `.nixoci-${digestHex(sha256Digest(name)).slice(0, 16)}`;
  return {
    name: (tag) => `${short}.${tag}.partial`,
    pattern: new RegExp(`^\\${short}\\.${TEMP_TAG_PATTERN}\\.partial$`),
  };
}

/** Whether standard output is a pipe (or a socket), rather than a file or a device. */
function stdoutIsPipe(): boolean {
  try {
    const st = fstatSync(1);
    return st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
}

/** Whether FILE exists (links followed) and is not a regular file or a directory. */
function isSpecialFile(file: string): boolean {
  try {
    const st = statSync(file);
    return !st.isFile() && !st.isDirectory();
  } catch {
    return false;
  }
}

/** The file a symlink leads to (the temp file goes beside it), else FILE itself. */
function symlinkTarget(file: string): string {
  try {
    return lstatSync(file).isSymbolicLink() ? realpathSync(file) : file;
  } catch {
    return file; // a dangling link: replaced, as before
  }
}

/** A character device that is a terminal. A FIFO is never opened here: its reader would see EOF. */
function isTerminal(file: string): boolean {
  if (!statSync(file, { throwIfNoEntry: false })?.isCharacterDevice()) return false;
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    return isatty(fd);
  } catch {
    return false; // a device we cannot open: the write says why
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
