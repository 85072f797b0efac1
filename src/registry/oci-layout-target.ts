import { randomBytes } from 'node:crypto';
import { imageReport, writeError } from './target-result.js';
import { atomicWrite } from '../core/atomic-write.js';
import { withFileLock } from '../core/file-lock.js';
import { makeDirs } from '../core/make-dirs.js';
import { removeQuietly } from '../core/remove-quietly.js';
import { removeStaleFiles } from '../core/stale-files.js';
import { TEMP_TAG_PATTERN } from '../core/temp-name.js';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pLimit from 'p-limit';
import { z } from 'zod';
import { digestHex, type Digest } from '../core/digest.js';
import { dirProblem } from '../core/dir-problem.js';
import { NixociError } from '../core/errors.js';
import { MediaType } from '../core/media-types.js';
import { renderImage, renderIndex, type Blob, type Image } from '../image/image.js';
import type { ImageReport, ImageTarget, TargetResult, WriteContext } from '../image/target.js';
import type { Layer, LayerDigests } from '../layer/layer.js';

/** A layer's digests, and whether this run wrote its blob (else the layout had it). */
interface Written {
  readonly digests: LayerDigests;
  readonly written: boolean;
}

const REF_NAME = 'org.opencontainers.image.ref.name';

// Other fields (the index's own annotations, written by other tools) pass through and are kept.
const indexSchema = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.string().optional(),
    manifests: z.array(
      z.object({ mediaType: z.string(), digest: z.string(), size: z.number() }).passthrough(),
    ),
  })
  .passthrough();

type Index = z.infer<typeof indexSchema>;

/**
 * An OCI image layout directory (`oci:DIR[:TAG]`), readable by skopeo, umoci, crane and oras (a
 * multi-arch one by skopeo, crane, oras and containerd; umoci 0.4 reads no index of several
 * platforms: "tag is ambiguous").
 * Blobs are written to a temp name and renamed into place once their digest is known and verified;
 * blobs already present are skipped; index.json is replaced atomically and last, so a failed run
 * never leaves a tag pointing at a missing blob.
 */
export class OciLayoutTarget implements ImageTarget {
  readonly description: string;
  readonly keepsManifest = true;
  private readonly dir: string;

  constructor(
    dir: string,
    private readonly tag: string = 'latest',
  ) {
    this.dir = resolve(dir);
    this.description = `oci:${dir}:${tag}`;
  }

  /** The layout's directory (absolute) and the tag written there: one image of one layout. */
  get place(): string {
    return `${this.dir}:${this.tag}`;
  }

  check(): void {
    const problem = dirProblem(this.dir, true);
    if (problem)
      throw new NixociError('TARGET_WRITE', `cannot write ${this.description}: ${problem}`, {
        hint: 'give a directory that exists or can be made, and is writable',
      });
  }

  async write(images: readonly Image[], ctx: WriteContext): Promise<TargetResult> {
    const createdDir = !existsSync(this.dir);
    const tmps = new Set<string>();
    /** Blob files this run put in place (its own, if it must remove the layout it made). */
    const committed = new Set<string>();
    // The first layer that fails stops the others, as a push does: the run has failed, and the
    // cores they would keep busy (and the temp files the queued ones would make) are waste. Its own
    // error is what the run reports; the others end ABORTED.
    const stop = new AbortController();
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, stop.signal]) : stop.signal;
    /** Every layer given a turn, settled before the temp files are removed on a failure. */
    const turns: Promise<unknown>[] = [];
    try {
      await this.init(tmps, ctx.signal);
      const reports: ImageReport[] = [];
      const manifests: { manifest: Blob; platform: Image['platform'] }[] = [];
      for (const image of images) {
        // Two layers at a time: with layer workers, each uses a core for tar + hash + compress.
        const limit = pLimit(2);
        const writeOne = async (layer: Layer): Promise<Written> => {
          const known = layer.known;
          if (known && this.hasBlob(known.digest, known.size)) return { digests: known, written: false };
          const tmp = this.tempName();
          tmps.add(tmp);
          // Made now (exclusively), and written by whoever makes the blob: a layer worker writes
          // it itself, so a big blob never crosses threads.
          closeSync(openSync(tmp, 'wx'));
          const digests = await layer.writeTo({ file: tmp }, signal);
          this.commitBlob(tmp, digests.digest);
          committed.add(digestHex(digests.digest));
          tmps.delete(tmp);
          layer.keptIn(this.blobPath(digests.digest), 0);
          return { digests, written: true };
        };
        // Biggest layers first (results stay in layer order): the last layer to finish is then a
        // small one, and the two cores stay busy to the end.
        const bySize = image.layers
          .map((l, i) => i)
          .sort((a, b) => image.layers[b]!.planned.narSize - image.layers[a]!.planned.narSize);
        const done = new Map<number, Promise<Written>>();
        for (const i of bySize) {
          const turn = limit(() => {
            if (signal.aborted) throw new NixociError('ABORTED', 'aborted');
            // Stopped before this turn is given back, so that no queued layer starts in between.
            return writeOne(image.layers[i]!).catch((e: unknown) => {
              stop.abort();
              throw e;
            });
          });
          turns.push(turn);
          done.set(i, turn);
        }
        const written = await Promise.all(image.layers.map((_, i) => done.get(i)!));
        const r = renderImage(
          image,
          written.map((w) => w.digests),
        );
        this.putJsonBlob(r.config, committed);
        this.putJsonBlob(r.manifest, committed);
        reports.push(
          imageReport(image, r, (i) =>
            written[i]!.written
              ? { action: 'written', bytesSent: written[i]!.digests.size }
              : { action: 'skipped', bytesSent: 0 },
          ),
        );
        manifests.push({ manifest: r.manifest, platform: image.platform });
      }
      let top: Blob;
      if (manifests.length === 1) top = manifests[0]!.manifest;
      else {
        top = renderIndex(manifests, images[0]?.annotations?.index);
        this.putJsonBlob(top, committed);
      }
      await withFileLock(this.lockFile, () => this.tagTop(top), ctx.signal);
      return { target: this.description, manifestDigest: top.digest, images: reports, notes: [] };
    } catch (e) {
      // The layers under way stop (above) and are let finish before their temp files are removed:
      // a queued one would otherwise still make a temp file, and one under way put its blob in
      // place, after the cleanup.
      stop.abort();
      await Promise.allSettled(turns);
      for (const t of tmps) removeQuietly(t);
      tmps.clear();
      if (createdDir) await this.removeIfUnused(committed);
      throw writeError(this.description, e, 'check that the directory is writable and has free space');
    } finally {
      for (const t of tmps) removeQuietly(t);
    }
  }

  /**
   * Removes the directory this failed run made, unless another run uses it too: one has tagged an
   * image there, or is writing there now (its `.tmp-PID-…` files, made under the lock by init), or
   * has put blobs there that it may yet tag. Checked under the index lock, so that neither a tag nor
   * a run starting lands in between.
   */
  private async removeIfUnused(committed: ReadonlySet<string>): Promise<void> {
    // Moved aside under the lock (with the lock file: a run waiting for it finds no directory and
    // makes a new one), removed after.
    const aside = `${this.dir}.${process.pid}.removed`;
    try {
      await withFileLock(this.lockFile, () => {
        if (existsSync(join(this.dir, 'index.json'))) return;
        if (readdirSync(join(this.dir, 'blobs', 'sha256')).some((n) => !committed.has(n))) return;
        renameSync(this.dir, aside);
      });
      removeQuietly(aside, { recursive: true });
    } catch {
      // not made after all, or not ours to enter: nothing to remove, and the error being reported
      // is the one that matters
    }
  }

  /** Held while index.json is read and rewritten (src/core/file-lock.ts). */
  private get lockFile(): string {
    return join(this.dir, 'index.json.lock');
  }

  /**
   * Makes the layout, with a temp file in it (one of `tmps`) that tells a failed run which made the
   * directory that this one writes there too (removeIfUnused). Made under the lock, so that it is
   * never made just after that run looked; a directory removed before this run could take the lock
   * is made again.
   */
  private async init(tmps: Set<string>, signal?: AbortSignal): Promise<void> {
    // Checked before anything is written: a directory whose index.json is not an index is not
    // ours to fill with blobs.
    this.readIndex();
    for (let attempt = 1; ; attempt++) {
      makeDirs(join(this.dir, 'blobs', 'sha256'));
      removeStaleTemps(this.dir);
      try {
        await withFileLock(
          this.lockFile,
          () => {
            const here = this.tempName();
            closeSync(openSync(here, 'wx'));
            tmps.add(here);
            const marker = join(this.dir, 'oci-layout');
            if (!existsSync(marker)) atomicWrite(marker, JSON.stringify({ imageLayoutVersion: '1.0.0' }));
          },
          signal,
        );
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 3) throw e;
      }
    }
  }

  /**
   * A new temp name among the blobs: `.tmp-PID-` lets removeStaleTemps clean up after a killed run,
   * the random rest keeps the name unguessable (it is created with 'wx', a planted link refused).
   */
  private tempName(): string {
    return join(this.dir, 'blobs', 'sha256', `.tmp-${process.pid}-${randomBytes(8).toString('hex')}`);
  }

  private blobPath(d: Digest): string {
    return join(this.dir, 'blobs', 'sha256', digestHex(d));
  }

  private hasBlob(d: Digest, size: number): boolean {
    try {
      return statSync(this.blobPath(d)).size === size;
    } catch {
      return false;
    }
  }

  private commitBlob(tmp: string, d: Digest): void {
    renameSync(tmp, this.blobPath(d));
  }

  private putJsonBlob(b: Blob, committed: Set<string>): void {
    if (this.hasBlob(b.digest, b.bytes.length)) return;
    atomicWrite(this.blobPath(b.digest), b.bytes);
    committed.add(digestHex(b.digest));
  }

  /**
   * Points the tag at `top` in index.json, replacing whatever the tag pointed at before. Called under
   * the layout's lock: another run tagging at the same time would otherwise drop this tag or its.
   */
  private tagTop(top: Blob): void {
    const index = this.readIndex();
    const manifests: Record<string, unknown>[] = index.manifests.filter(
      (m) => (m.annotations as Record<string, string> | undefined)?.[REF_NAME] !== this.tag,
    );
    manifests.push({
      mediaType: top.mediaType,
      digest: top.digest,
      size: top.bytes.length,
      annotations: { [REF_NAME]: this.tag },
    });
    atomicWrite(
      join(this.dir, 'index.json'),
      JSON.stringify({ ...index, schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }),
    );
  }

  /** index.json (an empty index when there is none yet); a bad one is refused. */
  private readIndex(): Index {
    const file = join(this.dir, 'index.json');
    if (!existsSync(file)) return { schemaVersion: 2, manifests: [] };
    const parsed = indexSchema.safeParse(safeJson(readFileSync(file, 'utf8')));
    if (!parsed.success) {
      throw new NixociError('TARGET_INVALID', `${file} is not a valid OCI index`, {
        hint: 'point oci: at an empty directory or at an OCI image layout',
      });
    }
    return parsed.data;
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
}

const STALE_TEMP = new RegExp(`^\\.tmp-(\\d+)-|\\.${TEMP_TAG_PATTERN}\\.tmp$`);

/**
 * Temp files of writers that were killed (SIGKILL leaves `.tmp-PID-…` blobs and
 * `FILE.PID.RANDOM.tmp` from atomicWrite): removed when their process is gone. A live writer's
 * files are left alone, so two builds into one layout do not break each other.
 */
function removeStaleTemps(dir: string): void {
  for (const d of [dir, join(dir, 'blobs', 'sha256')]) removeStaleFiles(d, STALE_TEMP);
}
