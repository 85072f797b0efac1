import { readFileSync, statSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { isIP } from 'node:net';
import { Duplex, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { NixociError, reason } from '../../core/errors.js';
import { childProcess, https, readline } from '../../core/builtins.js';
import { tlsTrust } from '../../core/tls-trust.js';
import type { Endpoint, EngineKind } from './discover.js';
import { socketAccessHint } from './socket-access.js';

/** Oldest Engine API nixoci speaks (Docker 1.13); newest it asks for. */
export const MIN_API_VERSION = '1.25';
export const MAX_API_VERSION = '1.43';

export interface EngineResponse {
  readonly status: number;
  readonly body: IncomingMessage;
}

interface RequestInit {
  readonly query?: Record<string, string>;
  readonly body?: Readable | Buffer;
  readonly contentType?: string;
  readonly signal?: AbortSignal | undefined;
  /** Unversioned path: the engine's own API version (usable before negotiation). */
  readonly raw?: boolean;
}

const versionSchema = z
  .object({
    ApiVersion: z.string(),
    Version: z.string(),
    Arch: z.string().optional(),
    Components: z
      .array(z.object({ Name: z.string() }).passthrough())
      .nullable()
      .optional(),
  })
  .passthrough();
const infoSchema = z
  .object({
    Driver: z.string().optional(),
    DriverStatus: z.array(z.array(z.string())).nullable().optional(),
    ID: z.string().optional(),
    Architecture: z.string().optional(),
  })
  .passthrough();
const inspectSchema = z
  .object({
    Id: z.string(),
    RepoTags: z.array(z.string()).nullable().optional(),
    RootFS: z.object({ Layers: z.array(z.string()).nullable().optional() }).passthrough(),
    Architecture: z.string().optional(),
    Os: z.string().optional(),
    Variant: z.string().optional(),
    Created: z.string().optional(),
    Config: z.record(z.unknown()).nullable().optional(),
  })
  .passthrough();
const listSchema = z.array(
  z
    .object({
      Id: z.string(),
      RepoTags: z.array(z.string()).nullable().optional(),
      Created: z.number().optional(),
    })
    .passthrough(),
);
const progressSchema = z
  .object({
    stream: z.string().optional(),
    status: z.string().optional(),
    error: z.string().optional(),
    errorDetail: z.object({ message: z.string().optional() }).passthrough().optional(),
  })
  .passthrough();

export type EngineVersion = z.infer<typeof versionSchema>;
export type EngineInfo = z.infer<typeof infoSchema>;
export type ImageSummary = z.infer<typeof listSchema>[number];
export interface ImageInspect {
  readonly id: string;
  readonly repoTags: readonly string[];
  readonly layers: readonly string[];
  /** The image config as the engine reports it (its history is another endpoint's). */
  readonly architecture?: string | undefined;
  readonly os?: string | undefined;
  readonly variant?: string | undefined;
  readonly created?: string | undefined;
  readonly config?: Record<string, unknown> | null | undefined;
}

/**
 * A small Engine API client (Docker, or Podman's Docker-compatible API) over a unix socket, TCP
 * (optionally TLS), or `ssh … docker system dial-stdio`. One HTTP exchange per method.
 */
export class EngineClient {
  private api = MIN_API_VERSION;
  private connection: RequestOptions | undefined;

  constructor(
    readonly endpoint: Endpoint,
    readonly engine: EngineKind,
    /**
     * How long the first answer (GET /version) may take: an engine that accepts connections but
     * never answers (hung, or something else on its socket) would otherwise hang the run. The
     * load itself has no limit: importing a big image takes as long as it takes.
     */
    private readonly answerTimeoutMs = 30_000,
  ) {}

  get apiVersion(): string {
    return this.api;
  }

  /** API version negotiation from `GET /version` (which also tells whether an engine is there). */
  async negotiate(signal?: AbortSignal): Promise<EngineVersion> {
    // GET /version (unversioned) is answered by every engine and API version: it serves as the
    // ping, and saves a round trip on every run.
    const v = await this.version(signal);
    if (compareVersions(v.ApiVersion, MIN_API_VERSION) < 0) {
      throw new NixociError(
        'DAEMON',
        `${this.name()} speaks Engine API ${v.ApiVersion}, older than ${MIN_API_VERSION}`,
        {
          hint: `upgrade the engine (version ${v.Version}) to Docker ≥ 1.13 or Podman ≥ 3`,
        },
      );
    }
    this.api = compareVersions(v.ApiVersion, MAX_API_VERSION) > 0 ? MAX_API_VERSION : v.ApiVersion;
    return v;
  }

  async version(signal?: AbortSignal): Promise<EngineVersion> {
    const timeout = AbortSignal.timeout(this.answerTimeoutMs);
    const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      const v = this.parse(
        versionSchema,
        await this.json('GET', '/version', { raw: true, signal: both }),
        'GET /version',
      );
      // Podman reached by DOCKER_HOST (as its docs suggest for Docker tools) is named Podman
      this.podman ||= EngineClient.isPodman(v);
      if (this.podman) this.libpod = v.Version;
      return v;
    } catch (e) {
      if (!timeout.aborted || signal?.aborted) throw e;
      throw new NixociError(
        'DAEMON_UNREACHABLE',
        `${this.name()} did not answer GET /version within ${this.answerTimeoutMs < 10_000 ? (this.answerTimeoutMs / 1000).toFixed(1) : Math.round(this.answerTimeoutMs / 1000)} s`,
        {
          hint: `check that the engine is running and not hung (\`${this.engine === 'podman' ? 'podman info' : 'docker version'}\`), and that this is its address`,
          cause: e,
        },
      );
    }
  }

  // info, imageInspect and listImages use unversioned paths (the engine's own API version): what
  // nixoci reads from them has not changed across versions, and so they can go out before (and
  // while) GET /version negotiates, which saves a round trip in every inner-loop load.

  async info(signal?: AbortSignal): Promise<EngineInfo> {
    return this.parse(infoSchema, await this.json('GET', '/info', { raw: true, signal }), 'GET /info');
  }

  /** Whether `GET /version` was answered by Podman's service (its Docker-compatible API). */
  static isPodman(version: EngineVersion): boolean {
    return (version.Components ?? []).some((c) => c.Name === 'Podman Engine');
  }

  /** The containerd image store keeps layers per snapshotter and needs every layer in a load. */
  static usesContainerdStore(info: EngineInfo): boolean {
    const status = JSON.stringify(info.DriverStatus ?? []);
    return (
      status.includes('io.containerd.snapshotter.v1') ||
      (info.Driver ?? '').includes('io.containerd.snapshotter.v1')
    );
  }

  /** `GET /images/{name}/json`; undefined when the engine has no such image. */
  async imageInspect(name: string, signal?: AbortSignal): Promise<ImageInspect | undefined> {
    const res = await this.request('GET', `/images/${encodeURIComponent(name)}/json`, { raw: true, signal });
    if (res.status === 404) {
      await drain(res.body);
      return undefined;
    }
    const what = `inspect image ${name}`;
    const j = this.parse(inspectSchema, await this.readJson(res, what), what);
    return {
      id: j.Id,
      repoTags: j.RepoTags ?? [],
      layers: j.RootFS.Layers ?? [],
      architecture: j.Architecture,
      os: j.Os,
      variant: j.Variant,
      created: j.Created,
      config: j.Config,
    };
  }

  /** `GET /images/json` filtered by reference (a repository name matches all its tags). */
  async listImages(reference: string, signal?: AbortSignal): Promise<ImageSummary[]> {
    const filters = JSON.stringify({ reference: [reference] });
    const listed = await this.json('GET', '/images/json', { query: { filters }, raw: true, signal });
    return this.parse(listSchema, listed, 'GET /images/json');
  }

  /**
   * `POST /images/load?quiet=1` with the archive streamed as the body. The engine answers 200 and
   * then streams JSON progress lines; an `error` in one of them means the load failed.
   */
  async loadImage(body: Readable, signal?: AbortSignal): Promise<{ messages: string[] }> {
    const res = await this.request('POST', '/images/load', {
      query: { quiet: '1' },
      body,
      contentType: 'application/x-tar',
      signal,
    });
    if (res.status !== 200) {
      const message = await errorMessage(res);
      // An engine that answered before the end of the archive will not read the rest.
      body.destroy();
      throw new NixociError('DAEMON', `${this.name()} rejected the image: ${message}`, {
        hint: 'see the engine log for details',
      });
    }
    const messages: string[] = [];
    try {
      await this.readProgress(res.body, messages);
    } catch (e) {
      // the engine went away while importing (a crash, a restart), or its error line above
      throw this.connectError(e, signal, true);
    }
    return { messages };
  }

  /** The JSON progress lines of a load into `messages`; a line with an `error` throws it. */
  private async readProgress(body: IncomingMessage, messages: string[]): Promise<void> {
    for await (const line of readline().createInterface({ input: body, crlfDelay: Infinity })) {
      if (line.trim() === '') continue;
      let p: z.infer<typeof progressSchema>;
      try {
        p = progressSchema.parse(JSON.parse(line));
      } catch {
        messages.push(line);
        continue;
      }
      const err = p.errorDetail?.message ?? p.error;
      if (err)
        throw new NixociError('DAEMON', `${this.name()} rejected the image: ${err}`, {
          hint: 'see the engine log for details',
        });
      const msg = (p.stream ?? p.status ?? '').trim();
      if (msg) messages.push(msg);
    }
  }

  /** `POST /images/{name}/tag?repo=&tag=`. */
  async tagImage(source: string, repo: string, tag: string, signal?: AbortSignal): Promise<void> {
    await this.json('POST', `/images/${encodeURIComponent(source)}/tag`, { query: { repo, tag }, signal });
  }

  /**
   * Podman's own `POST /v{version}/libpod/images/{name}/tag`: a short name becomes
   * `localhost/NAME`, where the compat tag call would make it `docker.io/NAME`.
   */
  async tagPodmanImage(source: string, repo: string, tag: string, signal?: AbortSignal): Promise<void> {
    await this.json('POST', `/v${this.libpod}/libpod/images/${encodeURIComponent(source)}/tag`, {
      query: { repo, tag },
      raw: true,
      signal,
    });
  }

  /** `DELETE /images/{name}`; a missing image is not an error. */
  async removeImage(name: string, signal?: AbortSignal): Promise<void> {
    const res = await this.request('DELETE', `/images/${encodeURIComponent(name)}`, { signal });
    if (res.status === 404) return drain(res.body);
    await this.readJson(res, `remove image ${name}`);
  }

  /** One HTTP exchange; the response body is left for the caller to read. */
  request(method: string, path: string, init: RequestInit = {}): Promise<EngineResponse> {
    const qs = init.query ? `?${new URLSearchParams(init.query).toString()}` : '';
    const fullPath = `${init.raw ? '' : `/v${this.api}`}${path}${qs}`;
    const headers: Record<string, string> = { host: 'docker', 'user-agent': 'nixoci' };
    if (init.body) headers['content-type'] = init.contentType ?? 'application/json';
    if (Buffer.isBuffer(init.body)) headers['content-length'] = String(init.body.length);
    const opts: RequestOptions = {
      method,
      path: fullPath,
      headers,
      signal: init.signal,
      ...(this.connection ??= this.transport()),
    };
    const ep = this.endpoint;
    const send = ep.kind === 'tcp' && ep.tls ? https().request : httpRequest;
    return new Promise<EngineResponse>((resolve, reject) => {
      const req = send(opts, (res) => resolve({ status: res.statusCode ?? 0, body: res }));
      // Whether the engine was reached, so that a connection that breaks is not told as one refused.
      let connected = false;
      req.on('socket', (s) => {
        if (!('connecting' in s)) return; // ssh: its own errors say what failed
        if (s.connecting) s.once('connect', () => void (connected = true));
        else connected = true;
      });
      req.on('error', (e) => reject(this.connectError(e, init.signal, connected)));
      if (!init.body) req.end();
      else if (Buffer.isBuffer(init.body)) req.end(init.body);
      else
        pipeline(init.body, req).catch((e: unknown) => reject(this.connectError(e, init.signal, connected)));
    });
  }

  /**
   * How to reach the engine, worked out on the first request: a TLS engine's files are read, and
   * its secure context (a CA bundle parsed) built, once per client rather than per request.
   */
  private transport(): RequestOptions {
    const ep = this.endpoint;
    // No TLS, so no server name: without one, Node's agent works it out with net.isIP, whose
    // IPv6 regular expression costs ~5 ms to compile on a run's first request.
    const plain = { servername: '' } as RequestOptions;
    if (ep.kind === 'unix') return { socketPath: ep.socketPath, ...plain };
    if (ep.kind === 'tcp') {
      if (!ep.tls) return { host: ep.host, port: ep.port, ...plain };
      const read = (f: string | undefined): Buffer | undefined => (f ? readFileSync(f) : undefined);
      // Without a ca.pem the engine's certificate is checked against the system CAs, plus
      // NODE_EXTRA_CA_CERTS (src/core/tls-trust.ts); a secure context replaces cert and key.
      const cert = read(ep.tls.cert);
      const key = read(ep.tls.key);
      const trust = ep.tls.ca
        ? undefined
        : tlsTrust([], { ...(cert ? { cert } : {}), ...(key ? { key } : {}) });
      return {
        host: ep.host,
        port: ep.port,
        ...({
          // The certificate is checked against the engine's host name. Without a servername, Node
          // takes the Host header ("docker", as the docker CLI sends) and rejects every
          // certificate. An IP address is checked as such, and sent without SNI.
          servername: isIP(ep.host) ? '' : ep.host,
          ca: read(ep.tls.ca),
          cert,
          key,
          rejectUnauthorized: ep.tls.verify,
          ...trust,
        } as object),
      };
    }
    return { createConnection: () => sshConnection(ep, this.engine) as never };
  }

  private async json(method: string, path: string, init: RequestInit): Promise<unknown> {
    return this.readJson(await this.request(method, path, init), `${method} ${path}`);
  }

  private async readJson(res: EngineResponse, what: string): Promise<unknown> {
    if (res.status < 200 || res.status >= 300) throw this.error(`${what}: ${await errorMessage(res)}`);
    const text = await readText(res.body);
    try {
      // Podman answers some calls (e.g. tag: 201) with a body of just "\n".
      return text.trim() === '' ? null : (JSON.parse(text) as unknown);
    } catch {
      throw this.error(`${what}: the answer is not JSON: ${text.slice(0, 200)}`);
    }
  }

  /** An answer that matters, checked: one of another shape is the engine's error, not nixoci's. */
  private parse<S extends z.ZodTypeAny>(schema: S, value: unknown, what: string): z.infer<S> {
    const r = schema.safeParse(value);
    if (r.success) return r.data as z.infer<S>;
    const issue = r.error.issues[0];
    const at = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
    throw this.error(`${what}: unexpected answer${at}: ${issue?.message ?? 'invalid'}`);
  }

  /** Whether the engine is Podman: asked for, or found to be by its GET /version. */
  private podman = false;
  /** Podman's version (its libpod API's), from GET /version. */
  private libpod = '4.0.0';

  private name(): string {
    const podman = this.engine === 'podman' || this.podman;
    return `${podman ? 'Podman' : 'the Docker engine'} at ${this.endpoint.address}`;
  }

  private error(why: string): NixociError {
    return new NixociError('DAEMON', `${this.name()}: ${why}`, { hint: 'see the engine log for details' });
  }

  private connectError(e: unknown, signal?: AbortSignal, connected = false): NixociError {
    // An error of the body (a store read failing mid-archive) is reported as itself.
    if (e instanceof NixociError) return e;
    if (signal?.aborted) return new NixociError('ABORTED', 'aborted', { cause: e });
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      return new NixociError('DAEMON_UNREACHABLE', `cannot connect to ${this.name()}: permission denied`, {
        hint:
          this.endpoint.kind === 'unix'
            ? socketAccessHint(this.endpoint.socketPath)
            : 'check the engine address and its access rights',
        cause: e,
      });
    }
    // connect() on a file or a directory is refused like a socket nobody listens on
    if (this.endpoint.kind === 'unix' && code === 'ECONNREFUSED') {
      const { socketPath } = this.endpoint;
      const what = nonSocket(socketPath);
      if (what) {
        const example = this.engine === 'podman' ? '/run/podman/podman.sock' : '/var/run/docker.sock';
        return new NixociError(
          'DAEMON_UNREACHABLE',
          `cannot connect to ${this.name()}: ${socketPath} is ${what}, not a socket`,
          { hint: `name the engine's socket, e.g. unix://${example}`, cause: e },
        );
      }
    }
    // OpenSSL's words for a first answer that is not a TLS record: an engine that speaks plain HTTP.
    if (this.endpoint.kind === 'tcp' && this.endpoint.tls && /wrong version number/.test(reason(e))) {
      return new NixociError(
        'DAEMON_UNREACHABLE',
        `cannot connect to ${this.name()}: it answered in plain HTTP, not TLS`,
        {
          hint: 'for an engine without TLS unset DOCKER_TLS_VERIFY and DOCKER_TLS and use tcp://, not https://',
          cause: e,
        },
      );
    }
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL/.test(String(code ?? ''))) {
      return new NixociError('DAEMON_UNREACHABLE', `cannot connect to ${this.name()}: ${reason(e)}`, {
        hint: "put the CA of the engine's certificate in DOCKER_CERT_PATH/ca.pem (or NODE_EXTRA_CA_CERTS)",
        cause: e,
      });
    }
    // llhttp's codes: something listens there, but not an HTTP server
    if (String(code ?? '').startsWith('HPE_')) {
      return new NixociError('DAEMON_UNREACHABLE', `${this.name()} does not answer in HTTP: ${reason(e)}`, {
        hint: `is this the engine's address? Name it with --host / ${this.engine === 'podman' ? 'CONTAINER_HOST' : 'DOCKER_HOST'}`,
        cause: e,
      });
    }
    if (connected) {
      return new NixociError('DAEMON_UNREACHABLE', `the connection to ${this.name()} broke: ${reason(e)}`, {
        hint: 'did the engine stop or restart? See the engine log',
        cause: e,
      });
    }
    return new NixociError('DAEMON_UNREACHABLE', `cannot connect to ${this.name()}: ${reason(e)}`, {
      hint:
        this.endpoint.kind === 'ssh'
          ? `check that \`ssh ${this.endpoint.destination} ${this.engine} system dial-stdio\` works (key, known host, remote engine)`
          : `is the engine running? Start it, or name it with --host / ${this.engine === 'podman' ? 'CONTAINER_HOST' : 'DOCKER_HOST'}`,
      cause: e,
    });
  }
}

/** A socket-like duplex over `ssh HOST docker system dial-stdio` (what the docker CLI runs). */
function sshConnection(ep: Extract<Endpoint, { kind: 'ssh' }>, engine: EngineKind): Duplex {
  const remote = [
    engine,
    ...(ep.remoteSocket ? ['--host', `unix://${ep.remoteSocket}`] : []),
    'system',
    'dial-stdio',
  ];
  const args = [
    '-o',
    'ConnectTimeout=30',
    '-T',
    ...(ep.port ? ['-p', String(ep.port)] : []),
    '--',
    ep.destination,
    ...remote,
  ];
  const child = childProcess().spawn('ssh', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => void (stderr = (stderr + b.toString()).slice(-2000)));
  const d = Duplex.from({ readable: child.stdout, writable: child.stdin });
  child.on('error', (e) => d.destroy(e));
  child.on('exit', (code) => {
    if (code)
      d.destroy(
        Object.assign(new Error(`ssh exited with ${code}: ${stderr.trim().split('\n').pop() ?? ''}`), {
          code: 'ESSH',
        }),
      );
  });
  d.on('close', () => child.kill());
  // http.ClientRequest may call these on its socket.
  const sock = d as Duplex & Record<string, unknown>;
  for (const m of ['setTimeout', 'setNoDelay', 'setKeepAlive', 'ref', 'unref']) sock[m] = () => sock;
  return d;
}

/** What a path is when it exists and is not a socket ("a directory", "a file"), else undefined. */
function nonSocket(path: string): string | undefined {
  let st;
  try {
    st = statSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
  if (!st || st.isSocket()) return undefined;
  return st.isDirectory() ? 'a directory' : st.isFile() ? 'a file' : 'neither a file nor a directory';
}

async function drain(body: IncomingMessage): Promise<void> {
  body.resume();
  await new Promise<void>((resolve) =>
    body
      .once('end', resolve)
      .once('close', resolve)
      .once('error', () => resolve()),
  );
}

/** An engine's JSON answers are small (an image list of thousands is a few MB): more is not one. */
const MAX_ANSWER = 64 << 20;

async function readText(body: IncomingMessage, max = MAX_ANSWER): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += (c as Buffer).length;
    if (n > max) {
      body.destroy();
      throw new NixociError(
        'DAEMON',
        `the engine's answer is larger than ${max >> 20} MiB: not an Engine API answer`,
        {
          hint: "is this the engine's address? see the engine log for details",
        },
      );
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The engine's `{"message": …}` of a failed request, or its text. */
export async function errorMessage(res: EngineResponse): Promise<string> {
  const text = await readText(res.body, 1 << 20).catch(() => '');
  try {
    const j = JSON.parse(text) as { message?: unknown };
    if (typeof j.message === 'string') return j.message;
  } catch {
    // not JSON: use the text as is
  }
  return text.trim().slice(0, 500) || `HTTP ${res.status}`;
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
