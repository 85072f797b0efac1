import type { Response } from 'undici';
import { isDigest, sha256Digest, type Digest } from '../core/digest.js';
import { NixociError } from '../core/errors.js';
import { MediaType } from '../core/media-types.js';
import type { Blob } from '../image/image.js';
import { Authenticator } from './auth/authenticator.js';
import { resolveCredentials, type CredentialOptions } from './auth/credentials.js';
import { ociRefusal, readRegistryError, registryError } from './registry-error.js';
import type { RetryEvent } from './retry.js';
import { discard, readAtMost, Transport, type Body, type TransportOptions } from './transport.js';

export interface ClientOptions extends TransportOptions, CredentialOptions {
  /** The start of every error message, e.g. `push to ghcr.io/org/app`. */
  readonly what: string;
  /** Only reads (inspect, diff): error hints speak of pull access, not push access. */
  readonly reading?: boolean;
  readonly log?: (line: string) => void;
}

export const MANIFEST_ACCEPT = [
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
].join(', ');

/**
 * The largest manifest or index read: what the distribution registry accepts (4 MiB), with room to
 * spare. A config may be larger (history of a big image) but not as large as a layer.
 */
export const MAX_MANIFEST = 8 << 20;
export const MAX_CONFIG = 64 << 20;
/** How long cancelling an upload session may take, retries included. */
export const CANCEL_TIMEOUT_MS = 5_000;

/** A manifest or index as the registry holds it. */
export interface FetchedManifest {
  readonly mediaType: string;
  readonly bytes: Buffer;
  readonly digest: Digest;
}

export type MountResult =
  { readonly mounted: true } | { readonly mounted: false; readonly location: URL | undefined };

/**
 * The distribution API of one registry, one HTTP exchange per method, named after the spec. Every
 * method takes the repository it acts on; credentials and tokens are shared by all of them.
 */
export class RegistryClient {
  readonly transport: Transport;
  readonly auth: Authenticator;
  /** An auth file that exists but could not be read, named in the hint of a 401. */
  private unreadableAuthFile: string | undefined;

  constructor(
    readonly registry: string,
    host: string,
    private readonly o: ClientOptions,
    repositoryForCredentials = '',
  ) {
    const log = o.log;
    // --verbose names every retry and its wait: a push slowed down by a registry's 429s or 503s
    // would otherwise look hung.
    const retry = log
      ? {
          ...o.retry,
          onRetry: (e: RetryEvent): void => {
            o.retry?.onRetry?.(e);
            const why = e.reason === 'connection' ? 'connection failed' : `answered ${e.reason}`;
            log(
              `${e.request}: ${why}, retrying in ${(e.delayMs / 1000).toFixed(1)} s (attempt ${e.attempt + 1} of ${this.transport.retry.attempts})`,
            );
          },
        }
      : o.retry;
    this.transport = new Transport(host, retry ? { ...o, retry } : o);
    this.auth = new Authenticator({
      registry,
      plainHttp: this.transport.plainHttp,
      ...(o.insecureRegistries ? { insecureHosts: o.insecureRegistries } : {}),
      credentials: () =>
        resolveCredentials(registry, repositoryForCredentials, {
          ...o,
          onUnreadable: (file) => {
            o.onUnreadable?.(file);
            this.unreadableAuthFile ??= file;
            o.log?.(`registry ${registry}: cannot read ${file} (permission denied), passed over`);
          },
        }),
      dispatcher: () => this.transport.dispatcher(),
      ...(o.log ? { log: o.log } : {}),
    });
  }

  get what(): string {
    return this.o.what;
  }

  /** How messages begin: `push X failed`, but `read X` as other read errors do (inspect, diff). */
  private get failed(): string {
    return this.o.reading ? this.o.what : `${this.o.what} failed`;
  }

  /** GET /v2/: the API version check, which tells whether the credentials are taken (login). */
  async checkVersion(signal?: AbortSignal): Promise<void> {
    const res = await this.exchange('GET', '/v2/', {}, undefined, signal);
    if (res.status !== 200) throw await this.fail('GET /v2/', res);
    await discard(res);
  }

  /** HEAD /v2/R/blobs/D: the blob's size if the repository has it. */
  async blobExists(repo: string, digest: Digest, signal?: AbortSignal): Promise<number | undefined> {
    const res = await this.exchange('HEAD', `/v2/${repo}/blobs/${digest}`, {}, undefined, signal);
    await discard(res);
    if (res.status === 404) return undefined;
    if (res.status === 200) return Number(res.headers.get('content-length') ?? NaN);
    // Some registries and proxies do not allow HEAD on blobs: not known to be there, so it is
    // uploaded (or mounted), which a registry that has it takes all the same.
    if (res.status === 405) {
      this.o.log?.(`${this.registry}: HEAD of blob ${short(digest)} not allowed (405): taken as absent`);
      return undefined;
    }
    throw await this.fail(`check blob ${short(digest)}`, res);
  }

  /** POST /v2/R/blobs/uploads/?mount=D&from=S: 201 mounted; 202 means not, and opens a session. */
  async mountBlob(repo: string, digest: Digest, from: string, signal?: AbortSignal): Promise<MountResult> {
    const q = new URLSearchParams({ mount: digest, from });
    if (signal?.aborted) throw new NixociError('ABORTED', 'aborted');
    const res = await withGrace(signal, (graced) =>
      this.exchange('POST', `/v2/${repo}/blobs/uploads/?${q}`, {}, Buffer.alloc(0), graced),
    );
    await discard(res);
    if (res.status === 201) return { mounted: true };
    if (res.status === 202) {
      const location = this.location(res, `/v2/${repo}/blobs/uploads/`);
      await this.cancelIfAborted(location, signal);
      return { mounted: false, location };
    }
    // The source is not readable with these credentials (401/403/404), or the registry does not
    // do mounts its way (400, 405, 501, a 5xx after the retries): a mount is only a shortcut, so
    // the blob is uploaded instead, as docker and crane do. Refusals of the target itself
    // surface there.
    this.o.log?.(
      `${this.registry}: mount of ${short(digest)} from ${from} refused (${res.status}): uploading`,
    );
    return { mounted: false, location: undefined };
  }

  /** POST /v2/R/blobs/uploads/: opens an upload session, returns its location. */
  async startUpload(repo: string, signal?: AbortSignal): Promise<URL> {
    // An abort while the POST is in flight would leave a session open that nobody knows of: the
    // POST is let finish (within a grace period) and the session it opened cancelled. One that
    // came before is not sent at all.
    if (signal?.aborted) throw new NixociError('ABORTED', 'aborted');
    const res = await withGrace(signal, (graced) =>
      this.exchange('POST', `/v2/${repo}/blobs/uploads/`, {}, Buffer.alloc(0), graced),
    );
    if (res.status !== 202) throw await this.fail('start upload', res);
    await discard(res);
    const location = this.location(res, `/v2/${repo}/blobs/uploads/`);
    if (!location) {
      throw new NixociError(
        'REGISTRY',
        `${this.o.what} failed: start upload: the registry answered 202 without a Location header`,
        { hint: 'the registry or a proxy in front of it drops the Location header; check its configuration' },
      );
    }
    await this.cancelIfAborted(location, signal);
    return location;
  }

  private async cancelIfAborted(location: URL | undefined, signal: AbortSignal | undefined): Promise<void> {
    if (!signal?.aborted) return;
    if (location) await this.cancelUpload(location);
    throw new NixociError('ABORTED', 'aborted');
  }

  /**
   * PATCH LOCATION with a streamed body (chunked): one exchange, not retried here since a stream
   * cannot be replayed; returns the response for the uploader to judge.
   */
  async patchUpload(location: URL, body: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<Response> {
    return this.sendStream('PATCH', location, { 'content-type': 'application/octet-stream' }, body, signal);
  }

  /** PUT LOCATION?digest=D with the whole blob (monolithic) streamed with its known length. */
  async putUpload(
    location: URL,
    digest: Digest,
    body: AsyncIterable<Uint8Array>,
    size: number,
    signal?: AbortSignal,
  ): Promise<Response> {
    const url = withDigest(location, digest);
    return this.sendStream(
      'PUT',
      url,
      { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body,
      signal,
    );
  }

  /** PUT LOCATION?digest=D closing a session whose bytes were sent by PATCH (or a small blob). */
  async completeUpload(
    location: URL,
    digest: Digest,
    body: Buffer = Buffer.alloc(0),
    signal?: AbortSignal,
  ): Promise<void> {
    const res = await this.exchange(
      'PUT',
      withDigest(location, digest).href,
      { 'content-type': 'application/octet-stream' },
      body,
      signal,
    );
    if (res.status !== 201) throw await this.fail(`complete upload of ${short(digest)}`, res);
    await discard(res);
  }

  /**
   * DELETE LOCATION: cancels a session (best effort; a registry may not support it). Given up on
   * after CANCEL_TIMEOUT_MS: it runs after Ctrl-C too, which a registry that does not answer (each
   * attempt may wait --timeout, 300 s) otherwise held up for minutes.
   */
  async cancelUpload(location: URL): Promise<void> {
    try {
      const res = await this.exchange(
        'DELETE',
        location.href,
        {},
        undefined,
        AbortSignal.timeout(CANCEL_TIMEOUT_MS),
      );
      await discard(res);
    } catch {
      // The session expires on the registry anyway; nothing to report.
    }
  }

  /** GET /v2/R/manifests/REF, or undefined when there is none. */
  async getManifest(
    repo: string,
    reference: string,
    signal?: AbortSignal,
  ): Promise<FetchedManifest | undefined> {
    const res = await this.exchange(
      'GET',
      `/v2/${repo}/manifests/${reference}`,
      { accept: MANIFEST_ACCEPT },
      undefined,
      signal,
    );
    if (res.status === 404) {
      await discard(res);
      return undefined;
    }
    if (res.status !== 200) throw await this.fail(`get manifest ${reference}`, res);
    const bytes = await this.small(res, MAX_MANIFEST, `manifest ${reference}`, 'an image manifest');
    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    const digest = sha256Digest(bytes);
    if (isDigest(reference) && reference !== digest) {
      throw new NixociError('REGISTRY', `${this.failed}: manifest ${reference} has digest ${digest}`, {
        hint: 'the registry served other bytes than it was asked for',
      });
    }
    return { mediaType, bytes, digest };
  }

  /** PUT /v2/R/manifests/REF with the manifest's own media type; returns its digest. */
  async putManifest(repo: string, reference: string, blob: Blob, signal?: AbortSignal): Promise<Digest> {
    const res = await this.exchange(
      'PUT',
      `/v2/${repo}/manifests/${reference}`,
      { 'content-type': blob.mediaType },
      blob.bytes,
      signal,
    );
    // 201 per the spec; 200 and 202 (older Quay and distribution) are success too, as for docker and crane.
    if (![200, 201, 202].includes(res.status))
      throw ociRefusal(await this.fail(`put manifest ${reference}`, res), blob.mediaType);
    await discard(res);
    // A registry (or proxy) that stored other bytes than were sent would leave the tag on an image
    // nobody built: say so rather than report success.
    const stored = res.headers.get('docker-content-digest');
    if (stored && isDigest(stored) && stored !== blob.digest) {
      throw new NixociError(
        'REGISTRY',
        `${this.o.what} failed: put manifest ${reference}: the registry stored digest ${stored}, not ${blob.digest}`,
        { hint: 'the registry or a proxy in between altered the manifest; check it with skopeo inspect' },
      );
    }
    return blob.digest;
  }

  /** GET /v2/R/blobs/D for a small blob (a config), verified against its digest. */
  async getBlob(repo: string, digest: Digest, signal?: AbortSignal): Promise<Buffer> {
    const res = await this.exchange('GET', `/v2/${repo}/blobs/${digest}`, {}, undefined, signal);
    if (res.status !== 200) throw await this.fail(`get blob ${short(digest)}`, res);
    const bytes = await this.small(res, MAX_CONFIG, `blob ${short(digest)}`, 'an image config');
    if (sha256Digest(bytes) !== digest) {
      throw new NixociError('REGISTRY', `${this.failed}: blob ${short(digest)} does not match its digest`, {
        hint: 'the registry or a proxy altered the blob',
      });
    }
    return bytes;
  }

  /** The body of a manifest or config, refused when it is larger than any real one. */
  private async small(res: Response, limit: number, what: string, kind: string): Promise<Buffer> {
    const { bytes, whole } = await readAtMost(res, limit);
    if (!whole) {
      throw new NixociError(
        'REGISTRY',
        `${this.failed}: ${what} is larger than ${limit >> 20} MiB: not ${kind}`,
        { hint: 'the registry or a proxy in between sent something else; check the reference' },
      );
    }
    return bytes;
  }

  /** A registry answer that is not what the spec promises, as a NixociError. */
  async fail(op: string, res: Response): Promise<NixociError> {
    const info = await readRegistryError(res, await this.auth.secrets());
    const source = await this.auth.credentialSource();
    const auth = (await this.auth.tokenForCredentials())
      ? 'token'
      : source !== undefined
        ? 'credentials'
        : 'none';
    const err = registryError(
      this.o.what,
      op,
      info,
      this.registry,
      auth,
      this.o.reading,
      source,
      this.unreadableAuthFile,
    );
    const realm = this.auth.withheldFrom;
    if (!realm || (info.status !== 401 && info.status !== 403)) return err;
    return Object.assign(
      new NixociError(err.code, err.message, {
        hint: `the credentials were not sent to the plain-HTTP token realm ${realm} (not the registry's host) and an anonymous token does not allow this; if ${realm} is trusted, pass --insecure-registry ${realm}`,
      }),
      { registryCodes: info.codes, status: info.status },
    );
  }

  /** One exchange with a replayable body: retried on transient failures, re-sent once per new challenge. */
  private async exchange(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: Body,
    signal?: AbortSignal,
  ): Promise<Response> {
    const url = this.transport.url(path);
    for (let round = 0; ; round++) {
      let sentAuth = false;
      const res = await this.transport.request(
        method,
        url,
        async (u) => {
          const a = this.transport.isRegistry(u) ? await this.auth.header(signal) : undefined;
          if (u === url) sentAuth = a !== undefined;
          return a ? { ...headers, authorization: a } : headers;
        },
        body,
        signal,
      );
      this.o.log?.(`${method} ${url.pathname} → ${res.status}`);
      if (res.status !== 401 || round >= 2) return res;
      const again = await this.auth.onUnauthorized(res.headers.get('www-authenticate'), sentAuth);
      if (!again) return res;
      await discard(res);
    }
  }

  private async sendStream(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: AsyncIterable<Uint8Array>,
    signal?: AbortSignal,
  ): Promise<Response> {
    const a = this.transport.isRegistry(url) ? await this.auth.header(signal) : undefined;
    const res = await this.transport.send(
      method,
      url,
      a ? { ...headers, authorization: a } : headers,
      body,
      signal,
    );
    this.o.log?.(`${method} ${url.pathname} → ${res.status}`);
    return res;
  }

  private location(res: Response, fallback: string): URL | undefined {
    const l = res.headers.get('location');
    return l ? this.transport.resolve(l, fallback) : undefined;
  }
}

/**
 * Runs `fn` with a signal that aborts `ms` after `signal` does (or never, without one). The
 * listener on `signal` is removed when `fn` is done: `signal` is the whole run's, shared by every
 * exchange, and would otherwise collect one listener per upload.
 */
async function withGrace<T>(
  signal: AbortSignal | undefined,
  fn: (graced: AbortSignal | undefined) => Promise<T>,
  ms = 3000,
): Promise<T> {
  if (!signal) return fn(undefined);
  const c = new AbortController();
  const later = (): void => {
    setTimeout(() => c.abort(signal.reason), ms).unref();
  };
  if (signal.aborted) later();
  else signal.addEventListener('abort', later, { once: true });
  try {
    return await fn(c.signal);
  } finally {
    signal.removeEventListener('abort', later);
  }
}

function withDigest(location: URL, digest: Digest): URL {
  const u = new URL(location);
  u.searchParams.set('digest', digest);
  return u;
}

export function short(d: Digest): string {
  return d.slice(0, 'sha256:'.length + 12);
}
