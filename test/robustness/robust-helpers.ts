// Shared by the robustness suites: a seeded RNG, a chaos fault for the fault proxy, a small tar
// reader with the safety checks every layer must pass, read-back checks of what a registry holds
// (straight from its storage and over HTTP), and the built CLI as a killable child process.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { sha256Digest } from '../../src/core/digest.js';
import { cliBin } from '../helpers/cli.js';
import { repoRoot, stateDir } from '../helpers/env.js';
import { reply, type Fault } from '../registry/fault-proxy.js';

/** mulberry32: a tiny seeded PRNG, so every CI run injects the same faults at the same places. */
export function seededRng(seed: number): { next(): number; int(lo: number, hi: number): number } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)) };
}

export type FaultKind = '5xx' | '429' | 'reset' | 'lost-response' | 'truncate' | 'slow' | 'gc-404';

export interface ChaosStats {
  requests: number;
  faults: Record<FaultKind, number>;
}

export function newChaosStats(): ChaosStats {
  return {
    requests: 0,
    faults: {
      '5xx': 0,
      '429': 0,
      reset: 0,
      'lost-response': 0,
      truncate: 0,
      slow: 0,
      'gc-404': 0,
    },
  };
}

export const totalFaults = (s: ChaosStats): number => Object.values(s.faults).reduce((a, b) => a + b, 0);

/**
 * Forwards a request to the real registry, optionally delaying the answer, cutting the response
 * body half way (Content-Length kept, so the client sees a truncated body), or throttling the
 * request body (to widen the window for interruptions).
 */
export function forward(
  upstream: string,
  req: IncomingMessage,
  res: ServerResponse,
  o: {
    delayMs?: number;
    truncate?: boolean;
    throttleBytesPerSec?: number;
    /** Told the registry's status as the answer goes back to the client (after any delay). */
    onAnswer?: (status: number | undefined) => void;
  } = {},
): void {
  const [host, port] = upstream.split(':');
  const up = request(
    { host, port: Number(port), method: req.method, path: req.url, headers: req.headers },
    (ur) => {
      const answer = (): void => {
        o.onAnswer?.(ur.statusCode);
        if (!o.truncate) {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        ur.on('data', (c: Buffer) => chunks.push(c));
        ur.on('end', () => {
          const body = Buffer.concat(chunks);
          res.writeHead(ur.statusCode ?? 502, { ...ur.headers, 'content-length': String(body.length + 16) });
          res.write(body.subarray(0, Math.floor(body.length / 2)));
          // A body shorter than its Content-Length, then a dropped connection.
          setTimeout(() => res.destroy(), 5);
        });
      };
      if (o.delayMs) setTimeout(answer, o.delayMs);
      else answer();
    },
  );
  up.on('error', () => res.destroy());
  res.on('close', () => {
    if (!res.writableFinished) up.destroy();
  });
  if (!o.throttleBytesPerSec) {
    req.pipe(up);
    return;
  }
  const rate = o.throttleBytesPerSec;
  req.on('data', (c: Buffer) => {
    up.write(c);
    req.pause();
    setTimeout(() => req.resume(), Math.max(1, (c.length / rate) * 1000));
  });
  req.on('end', () => up.end());
  req.on('error', () => up.destroy());
}

const isUpload = (req: IncomingMessage): boolean =>
  req.method === 'PATCH' || (req.method === 'PUT' && (req.url ?? '').includes('/blobs/uploads/'));

/**
 * A fault for the fault proxy: with probability `rate` per request, one of 5xx, 429 with
 * Retry-After, a connection reset before the registry sees the request (half way through an
 * upload body), a response lost after the registry acted, a truncated response body, a slow
 * response, or a blob gone between HEAD and manifest PUT (a garbage collector at work).
 * Everything else is forwarded untouched.
 */
export function chaosFault(
  upstream: string,
  rng: ReturnType<typeof seededRng>,
  rate: number,
  stats: ChaosStats,
): Fault {
  return (req, res) => {
    stats.requests++;
    if (rng.next() >= rate) return false;
    const roll = rng.next();
    const isHead = req.method === 'HEAD';
    const blobHead = isHead && (req.url ?? '').includes('/blobs/sha256:');
    const manifestPut = req.method === 'PUT' && (req.url ?? '').includes('/manifests/');
    if (roll < 0.2) {
      stats.faults['5xx']++;
      reply(req, res, [500, 502, 503][rng.int(0, 2)]!, { 'content-type': 'text/plain' }, 'injected');
    } else if (roll < 0.35) {
      stats.faults['429']++;
      reply(req, res, 429, { 'retry-after': rng.next() < 0.8 ? '0' : '1' });
    } else if (roll < 0.45) {
      // The connection drops before the registry sees the request (uploads: half way through the body).
      stats.faults.reset++;
      const drop = (): void => {
        req.socket.destroy();
      };
      if (isUpload(req)) req.once('data', drop);
      req.once('end', drop);
      req.resume();
    } else if (roll < 0.55) {
      // The registry did the work, but its answer is lost with the connection.
      stats.faults['lost-response']++;
      const [host, port] = upstream.split(':');
      const up = request(
        { host, port: Number(port), method: req.method, path: req.url, headers: req.headers },
        (ur) => {
          ur.resume();
          ur.on('end', () => res.socket?.destroy());
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    } else if (roll < 0.65 && !isHead && !isUpload(req)) {
      stats.faults.truncate++;
      forward(upstream, req, res, { truncate: true });
    } else if (roll < 0.75 && (blobHead || manifestPut)) {
      // A garbage collector took the blob between the HEAD and the manifest PUT.
      stats.faults['gc-404']++;
      if (blobHead) reply(req, res, 404);
      else
        reply(
          req,
          res,
          400,
          { 'content-type': 'application/json' },
          JSON.stringify({
            errors: [{ code: 'MANIFEST_BLOB_UNKNOWN', message: 'blob unknown to registry' }],
          }),
        );
    } else {
      stats.faults.slow++;
      forward(upstream, req, res, { delayMs: rng.int(100, 800) });
    }
    return true;
  };
}

// --- tar ----------------------------------------------------------------------------------------

export interface TarInfo {
  /** Raw name bytes as latin1 (so invalid UTF-8 survives), PAX path applied. */
  readonly name: string;
  readonly type: string;
  readonly mode: number;
  readonly size: number;
  readonly linkname: string;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: number;
}

const field = (b: Buffer, off: number, len: number): string => {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return (z < 0 ? s : s.subarray(0, z)).toString('latin1');
};
const octal = (b: Buffer, off: number, len: number): number => {
  const s = field(b, off, len).trim();
  return s === '' ? 0 : parseInt(s, 8);
};

/** Reads a whole (uncompressed) tar, ustar + PAX; `limit` stops after that many entries. */
export function readTar(tar: Buffer, limit = Infinity): TarInfo[] {
  const out: TarInfo[] = [];
  let off = 0;
  let pax: Record<string, string> = {};
  while (off + 512 <= tar.length && out.length < limit) {
    const h = tar.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break;
    const sum = h.reduce((a, x, i) => a + (i >= 148 && i < 156 ? 32 : x), 0);
    if (sum !== octal(h, 148, 8)) throw new Error(`tar: bad header checksum at ${off}`);
    const type = String.fromCharCode(h[156] || 0x30);
    const size = octal(h, 124, 12);
    const body = tar.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === 'x') {
      pax = parsePax(body);
      continue;
    }
    if (type === 'g') continue;
    const prefix = field(h, 345, 155);
    const name = pax.path ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    out.push({
      name,
      type,
      mode: octal(h, 100, 8),
      size: pax.size !== undefined ? Number(pax.size) : size,
      linkname: pax.linkpath ?? field(h, 157, 100),
      uid: octal(h, 108, 8),
      gid: octal(h, 116, 8),
      mtime: octal(h, 136, 12),
    });
    pax = {};
  }
  return out;
}

export function parsePax(body: Buffer): Record<string, string> {
  const rec: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const sp = body.indexOf(0x20, i);
    const len = Number(body.subarray(i, sp).toString('latin1'));
    const kv = body.subarray(sp + 1, i + len - 1).toString('latin1');
    const eq = kv.indexOf('=');
    rec[kv.slice(0, eq)] = kv.slice(eq + 1);
    i += len;
  }
  return rec;
}

/** The uncompressed tar of a layer blob, by media type. */
export function layerTar(blob: Buffer, mediaType: string): Buffer {
  if (mediaType.endsWith('+gzip')) return gunzipSync(blob);
  if (mediaType.endsWith('+zstd'))
    return execFileSync('zstd', ['-d', '-c'], { input: blob, maxBuffer: 1 << 30 });
  return blob;
}

/**
 * Every way a layer entry could escape or grant more than the store did; empty when safe. No
 * absolute name after normalisation, no `..`, no hard link, no device node or FIFO, no
 * setuid/setgid unless kept on purpose.
 */
export function tarViolations(entries: readonly TarInfo[], o: { keepSetuid?: boolean } = {}): string[] {
  const bad: string[] = [];
  for (const e of entries) {
    const parts = e.name.split('/').filter((p) => p !== '' && p !== '.');
    const normalised = path.posix.normalize(e.name);
    if (e.name.startsWith('/') || normalised.startsWith('/')) bad.push(`absolute: ${e.name}`);
    if (parts.includes('..')) bad.push(`dot-dot: ${e.name}`);
    if (e.type === '1') bad.push(`hard link: ${e.name}`);
    if (e.type === '3' || e.type === '4' || e.type === '6') bad.push(`device/FIFO: ${e.name}`);
    if (!['0', '2', '5'].includes(e.type)) bad.push(`unexpected type ${e.type}: ${e.name}`);
    if (!o.keepSetuid && (e.mode & 0o6000) !== 0) bad.push(`setuid/setgid: ${e.name}`);
    if (e.uid !== 0 || e.gid !== 0) bad.push(`owner ${e.uid}:${e.gid}: ${e.name}`);
  }
  return bad;
}

// --- registry read-back ---------------------------------------------------------------------------

const registryStorage = path.join(stateDir, 'registry-plain', 'storage', 'docker', 'registry', 'v2');

/**
 * Upload sessions the plain registry still holds open for a repository (from its storage): a
 * cancelled session loses its `data` and `startedat` (distribution leaves `hashstates/` behind).
 */
export function openUploads(repo: string): string[] {
  const dir = path.join(registryStorage, 'repositories', repo, '_uploads');
  return existsSync(dir) ? readdirSync(dir).filter((u) => existsSync(path.join(dir, u, 'startedat'))) : [];
}

/** Layer blobs linked into a repository of the plain registry (committed uploads and mounts). */
export function committedBlobs(repo: string): Set<string> {
  const dir = path.join(registryStorage, 'repositories', repo, '_layers', 'sha256');
  return new Set(existsSync(dir) ? readdirSync(dir).map((h) => `sha256:${h}`) : []);
}

const ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

interface Descriptor {
  digest: string;
  size: number;
  mediaType: string;
}

/**
 * Every tag of `repo` on `host`: the manifest (and, for an index, each child) and every blob it
 * names are fetched and hashed. Returns the problems found (a tag with a missing or corrupt blob
 * is an image lost) and the layers seen, for tar checks.
 */
export async function auditRepository(
  host: string,
  repo: string,
  only?: string,
): Promise<{ tags: string[]; problems: string[]; layers: (Descriptor & { bytes: Buffer })[] }> {
  const problems: string[] = [];
  const layers: (Descriptor & { bytes: Buffer })[] = [];
  const tl = await fetch(`http://${host}/v2/${repo}/tags/list`);
  if (tl.status === 404) return { tags: [], problems, layers };
  const tags = ((await tl.json()) as { tags: string[] | null }).tags ?? [];
  const blob = async (d: Descriptor, at: string): Promise<Buffer | undefined> => {
    const r = await fetch(`http://${host}/v2/${repo}/blobs/${d.digest}`);
    if (r.status !== 200) {
      problems.push(`${at}: blob ${d.digest} → ${r.status}`);
      return undefined;
    }
    const bytes = Buffer.from(await r.arrayBuffer());
    if (sha256Digest(bytes) !== d.digest || bytes.length !== d.size)
      problems.push(`${at}: blob ${d.digest} does not match its digest/size`);
    return bytes;
  };
  const manifest = async (ref: string, at: string): Promise<void> => {
    const r = await fetch(`http://${host}/v2/${repo}/manifests/${ref}`, { headers: { accept: ACCEPT } });
    if (r.status !== 200) {
      problems.push(`${at}: manifest ${ref} → ${r.status}`);
      return;
    }
    const m = (await r.json()) as { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] };
    if (m.manifests) {
      for (const c of m.manifests) await manifest(c.digest, `${at}/${c.digest.slice(7, 19)}`);
      return;
    }
    const config = await blob(m.config!, `${at} config`);
    const diffIds = config
      ? (JSON.parse(config.toString()) as { rootfs: { diff_ids: string[] } })
      : undefined;
    for (const [i, l] of (m.layers ?? []).entries()) {
      const bytes = await blob(l, `${at} layer ${i}`);
      if (!bytes) continue;
      const tar = layerTar(bytes, l.mediaType);
      if (diffIds && sha256Digest(tar) !== diffIds.rootfs.diff_ids[i])
        problems.push(`${at} layer ${i}: diff_id mismatch`);
      layers.push({ ...l, bytes: tar });
    }
  };
  for (const t of tags) if (only === undefined || t === only) await manifest(t, `${repo}:${t}`);
  return { tags, problems, layers };
}

// --- the built CLI as a child -------------------------------------------------------------------

export interface Child {
  readonly child: ChildProcess;
  readonly done: Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }>;
}

export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, cwd = repoRoot): Child {
  const child = spawn(cliBin, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<Awaited<Child['done']>>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, done };
}

/**
 * Problems with a failing run's stderr: it must be `nixoci: error: …` plus at most a `hint: …`
 * line, with no stack trace and no internal error.
 */
export function clearErrorProblems(stderr: string): string[] {
  const lines = stderr.trimEnd().split('\n');
  const bad: string[] = [];
  if (!lines[0]?.startsWith('nixoci: error: ')) bad.push(`first line is not "nixoci: error:": ${lines[0]}`);
  if (lines.length > 2) bad.push(`${lines.length} lines`);
  if (lines.length === 2 && !lines[1]!.startsWith('hint: '))
    bad.push(`second line is not a hint: ${lines[1]}`);
  if (/\n\s+at /.test(stderr) || stderr.includes('internal error')) bad.push('stack trace or internal error');
  if (stderr.length > 2000) bad.push(`stderr is ${stderr.length} bytes`);
  return bad;
}
