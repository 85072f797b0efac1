import { Writable, type Readable } from 'node:stream';
import type { Response } from 'undici';
import type { Digest } from '../core/digest.js';
import { NixociError, isNixociError } from '../core/errors.js';
import { registryCodes } from './registry-error.js';
import { discard } from './transport.js';
import { short, type RegistryClient } from './client.js';
import { backoffDelay, isRetryableStatus, retryAfterMs, sleep } from './retry.js';

/** A blob that can be streamed again on every attempt (a layer). */
export interface BlobSource {
  /** Digest and size when known before reading (cache or registry annotations). */
  known(): { readonly digest: Digest; readonly size: number } | undefined;
  /**
   * A fresh stream of the blob; `digests` settles once it has been read to the end. May wait for
   * its turn to read the store (a push makes as many blobs at a time as it has cores).
   */
  open(signal?: AbortSignal): Promise<{
    stream: Readable;
    digests: Promise<{ readonly digest: Digest; readonly size: number }>;
  }>;
}

export interface UploadOptions {
  readonly signal?: AbortSignal;
  /** A session already open (from a mount that did not happen). */
  readonly session?: URL;
  readonly onBytes?: (n: number) => void;
}

export interface UploadResult {
  readonly digest: Digest;
  readonly size: number;
  /** Bytes sent over the wire, every attempt counted. */
  readonly bytesSent: number;
}

/** Statuses with which a registry says "not this way": try the other upload form. */
const REJECTS_FORM = new Set([400, 405, 411, 413, 415, 416, 501]);

/**
 * Uploads a blob: a monolithic `PUT ?digest=` with Content-Length when digest and size are known,
 * else one streamed chunked PATCH (digest computed while it flows) closed by `PUT ?digest=`. A
 * registry that refuses one form gets the other; transient failures reopen the stream and start
 * a new session. A session left behind by a failure or an abort is cancelled (DELETE).
 */
export async function uploadBlob(
  client: RegistryClient,
  repo: string,
  source: BlobSource,
  o: UploadOptions = {},
): Promise<UploadResult> {
  const policy = client.transport.retry;
  let bytesSent = 0;
  let session = o.session;
  let monolithic = source.known() !== undefined;
  let switched = false;
  const sent = (location: URL): string => `${monolithic ? 'PUT' : 'PATCH'} ${location.pathname}`;
  const count = (n: number): void => {
    bytesSent += n;
    o.onBytes?.(n);
  };
  for (let attempt = 1; ; attempt++) {
    const location = session ?? (await client.startUpload(repo, o.signal));
    session = undefined;
    let outcome: Outcome;
    try {
      outcome = monolithic
        ? await putWhole(client, location, source, count, o.signal)
        : await patchStream(client, repo, location, source, count, o.signal);
    } catch (e) {
      await client.cancelUpload(location);
      if (o.signal?.aborted) throw new NixociError('ABORTED', 'aborted', { cause: e });
      // Only the closing PUT throws a registry error here: its session lost means a new one.
      const lost = sessionLost(e);
      const unreachable = isNixociError(e) && e.code === 'REGISTRY_UNREACHABLE';
      if (!(lost || unreachable) || attempt >= policy.attempts) throw e;
      const delayMs = backoffDelay(attempt, policy);
      policy.onRetry?.({
        attempt,
        reason: lost ? '404' : 'connection',
        delayMs,
        request: lost ? `PUT ${location.pathname}` : sent(location),
      });
      await sleep(delayMs, o.signal);
      continue;
    }
    if (outcome.ok) return { ...outcome.ok, bytesSent };
    const res = outcome.res;
    // Another host (the registry's storage, a proxy's rewrite) got no registry credentials, and
    // none of ours would help it: say where the upload went instead of blaming the credentials.
    if ((res.status === 401 || res.status === 403) && !client.transport.isRegistry(location)) {
      await discard(res);
      await client.cancelUpload(location);
      throw new NixociError(
        'REGISTRY',
        `${client.what} failed: upload blob: ${location.host}, where the registry sent the upload, answered ${res.status}`,
        {
          hint: `registry credentials go to ${client.transport.host} only; check the registry's (or its proxy's) upload location settings`,
        },
      );
    }
    if (res.status === 401 && attempt < policy.attempts) {
      const again = await client.auth.onUnauthorized(res.headers.get('www-authenticate'), true);
      // The registry's own words are read before the session goes: they say why it refused.
      const refused = again ? undefined : await client.fail(`upload blob`, res);
      if (again) await discard(res);
      await client.cancelUpload(location);
      if (refused) throw refused;
      continue;
    }
    if (REJECTS_FORM.has(res.status) && !switched) {
      // One switch of form, not counted as an attempt: the registry told us how it wants it.
      switched = true;
      monolithic = !monolithic;
      await discard(res);
      await client.cancelUpload(location);
      if (monolithic && !source.known()) await hashOnly(source, o.signal);
      attempt--;
      continue;
    }
    if (isRetryableStatus(res.status) && attempt < policy.attempts) {
      const wait = retryAfterMs(res.headers.get('retry-after'), policy) ?? backoffDelay(attempt, policy);
      policy.onRetry?.({ attempt, reason: String(res.status), delayMs: wait, request: sent(location) });
      await discard(res);
      await client.cancelUpload(location);
      await sleep(wait, o.signal);
      continue;
    }
    await client.cancelUpload(location);
    throw await client.fail(`upload blob${outcome.digest ? ` ${short(outcome.digest)}` : ''}`, res);
  }
}

type Outcome =
  | { ok: { digest: Digest; size: number }; res?: undefined; digest?: undefined }
  | { ok?: undefined; res: Response; digest?: Digest };

async function putWhole(
  client: RegistryClient,
  location: URL,
  source: BlobSource,
  count: (n: number) => void,
  signal?: AbortSignal,
): Promise<Outcome> {
  const known = source.known()!;
  const { stream, digests } = await source.open(signal);
  const res = await sendOrLayerError(
    client.putUpload(location, known.digest, counted(stream, count), known.size, signal),
    stream,
    digests,
  );
  if (res.status !== 201) {
    stream.destroy();
    return { res, digest: known.digest };
  }
  await discard(res);
  const d = await digests;
  if (d.digest !== known.digest) {
    // The registry verified the bytes against known.digest, so this cannot happen unless the store changed under us.
    throw new NixociError(
      'STORE_CHANGED',
      `${client.what} failed: layer ${short(known.digest)} changed while it was uploaded`,
      {
        hint: 'delete the digest cache (~/.cache/nixoci) and try again',
      },
    );
  }
  return { ok: known };
}

async function patchStream(
  client: RegistryClient,
  repo: string,
  location: URL,
  source: BlobSource,
  count: (n: number) => void,
  signal?: AbortSignal,
): Promise<Outcome> {
  const { stream, digests } = await source.open(signal);
  const res = await sendOrLayerError(
    client.patchUpload(location, counted(stream, count), signal),
    stream,
    digests,
  );
  // 202 per the spec; some registries answer 204 or 201, which docker and crane take as well.
  if (![202, 204, 201].includes(res.status)) {
    stream.destroy();
    return { res };
  }
  const next = res.headers.get('location');
  await discard(res);
  const d = await digests;
  await completeUploadConfirmed(
    client,
    repo,
    next ? new URL(next, location) : location,
    d.digest,
    undefined,
    signal,
  );
  return { ok: d };
}

/**
 * Closes an upload session. When the answer to the closing PUT was lost and its retry finds the
 * session gone (404 BLOB_UPLOAD_UNKNOWN), the first PUT may well have committed the blob: a HEAD
 * settles it, instead of failing a push that succeeded. When the blob is not there either, the
 * error thrown is one `sessionLost` recognises.
 */
export async function completeUploadConfirmed(
  client: RegistryClient,
  repo: string,
  location: URL,
  digest: Digest,
  body: Buffer | undefined,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await client.completeUpload(location, digest, body, signal);
  } catch (e) {
    if (!sessionLost(e) || (await client.blobExists(repo, digest, signal)) === undefined) throw e;
  }
}

/**
 * Whether a closing PUT found its session gone (404 BLOB_UPLOAD_UNKNOWN). A registry may drop the
 * session when a commit fails: distribution cancels it on any commit error, a 500 from its storage
 * included, so the retry of that PUT meets a 404. The bytes must then go again, in a new session.
 */
export function sessionLost(e: unknown): boolean {
  return registryCodes(e).includes('BLOB_UPLOAD_UNKNOWN') || (e as { status?: number }).status === 404;
}

/** Runs the request; when it fails because the layer stream broke, reports the layer's error. */
async function sendOrLayerError(
  req: Promise<Response>,
  stream: Readable,
  digests: Promise<unknown>,
): Promise<Response> {
  // The digests promise may reject while the request is still being handled; observe it either way.
  digests.catch(() => undefined);
  try {
    return await req;
  } catch (e) {
    stream.destroy();
    const layerError = await digests.then(
      () => undefined,
      (err: unknown) => err,
    );
    // A store read failure is the real cause; a broken pipe after a dropped connection is not.
    if (isNixociError(layerError) && !(isNixociError(e) && e.code === 'ABORTED')) throw layerError;
    throw e;
  }
}

async function* counted(stream: Readable, count: (n: number) => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    count(chunk.length);
    yield chunk;
  }
}

/** Computes digest and size without sending (only when a registry refused the streamed form). */
async function hashOnly(source: BlobSource, signal?: AbortSignal): Promise<void> {
  const { stream, digests } = await source.open(signal);
  stream.pipe(new Writable({ write: (_c, _e, cb) => cb() }));
  await digests;
}
