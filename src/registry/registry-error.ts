import type { Response } from 'undici';
import { z } from 'zod';
import { NixociError } from '../core/errors.js';
import { MediaType } from '../core/media-types.js';
import { parseChallenges, pickChallenge } from './auth/challenge.js';
import type { Credentials } from './auth/credentials.js';
import { MAX_DROPPED_BODY, readAtMost } from './transport.js';

const errorBody = z.object({
  errors: z.array(
    z.object({ code: z.string(), message: z.string().optional(), detail: z.unknown().optional() }),
  ),
});

export interface RegistryErrorInfo {
  readonly status: number;
  /** Codes from the body's `errors[]`, e.g. MANIFEST_BLOB_UNKNOWN, DENIED. */
  readonly codes: readonly string[];
  /** One line: `404 MANIFEST_UNKNOWN: manifest unknown`. */
  readonly summary: string;
  /** The `error` of a 401's challenge: `invalid_token` (the token itself refused), `insufficient_scope`. */
  readonly challengeError?: string;
}

/** Text of a registry's answer for a message: one line, at most 200 characters. */
const oneLine = (text: string): string => text.replace(/\s+/g, ' ').trim().slice(0, 200);

/** Reads the distribution spec's error body (`{"errors":[{code,message,detail}]}`), if any. */
export async function readRegistryError(
  res: Response,
  /** What nixoci sent that must not be printed back (`secretsOf`). */
  secrets: readonly string[] = [],
): Promise<RegistryErrorInfo> {
  let text = '';
  try {
    text = (await readAtMost(res, MAX_DROPPED_BODY)).bytes.toString();
  } catch {
    // An unreadable body leaves only the status to report.
  }
  let codes: string[] = [];
  let detail = '';
  try {
    const body = errorBody.parse(JSON.parse(text));
    codes = body.errors.map((e) => e.code);
    // A detail given as text (distribution's "http: request body too large") says why; one given as
    // an object (the digest of a missing blob) is for programs.
    const why = (d: unknown): string => (typeof d === 'string' && d.trim() !== '' ? ` (${oneLine(d)})` : '');
    detail = body.errors
      .map((e) => `${e.code}${e.message ? `: ${e.message}` : ''}${why(e.detail)}`)
      .join('; ');
  } catch {
    detail = oneLine(text);
  }
  const challengeError = pickChallenge(parseChallenges(res.headers.get('www-authenticate')))?.params.error;
  return {
    status: res.status,
    codes,
    summary: `${res.status}${detail ? ` ${redact(detail, secrets)}` : ''}`,
    ...(challengeError ? { challengeError } : {}),
  };
}

/**
 * A registry or proxy may echo the request's Authorization header, a token or the password itself
 * in its error body; that body goes into messages, so credentials in it become `***`: first every
 * `secret` nixoci sent (in every form it went: plain, base64, `USER:PASSWORD` in base64, URL-encoded),
 * then anything that looks like one (`Bearer …`, `token=…`), for a secret sent by someone else.
 */
export function redact(text: string, secrets: readonly string[] = []): string {
  const forms = new Set<string>();
  for (const s of secrets) {
    if (s === '') continue;
    const b64 = Buffer.from(s).toString('base64');
    for (const f of [s, b64, b64.replace(/=+$/, ''), encodeURIComponent(s)]) forms.add(f);
  }
  // longest first: a password inside its own base64 form is not left half-replaced
  let out = text;
  for (const f of [...forms].sort((a, b) => b.length - a.length)) out = out.split(f).join('***');
  return out
    .replace(/\b(Basic|Bearer)(\s+)(?!\*\*\*)[A-Za-z0-9+/=._~-]+/gi, '$1$2***')
    .replace(
      /\b(access_token|refresh_token|token|password)("?\s*[:=]\s*"?)(?!\*\*\*)[^\s",;&]+/gi,
      '$1$2***',
    );
}

/**
 * The strings to blank in a registry's error text: every secret in `credentials` and
 * `USER:PASSWORD` (whose base64 is the Basic header), and the bearer tokens sent.
 */
export function secretsOf(credentials: Credentials | undefined, tokens: readonly string[] = []): string[] {
  const c = credentials;
  return [
    ...(c?.password !== undefined ? [c.password, `${c.username ?? ''}:${c.password}`] : []),
    ...(c?.identityToken !== undefined ? [c.identityToken] : []),
    ...(c?.registryToken !== undefined ? [c.registryToken] : []),
    ...tokens,
  ];
}

/**
 * How the request was authorised: a token the token service gave for the credentials, the
 * credentials themselves (basic), or nothing.
 */
export type AuthUsed = 'token' | 'credentials' | 'none';

/** The hint for a registry error, by status and code. */
function hintFor(
  info: RegistryErrorInfo,
  registry: string,
  auth: AuthUsed,
  reading: boolean,
  source: string | undefined,
  unreadable: string | undefined,
): string {
  if (info.status === 401) {
    // `sudo docker login` leaves a config.json only root can read: docker passes it over with a
    // warning, and the push then goes anonymous. The 401 is the first place it shows.
    if (auth === 'none' && unreadable !== undefined)
      return `${unreadable} is not readable by this user (left by a login run with sudo?), so no credentials were sent: run \`sudo chown $USER ${unreadable}\`, or pass --creds USER:PASSWORD`;
    // The registry did not take the token its own token service issued (signature, issuer,
    // audience or expiry): no account rights would change that.
    if (auth === 'token' && info.challengeError === 'invalid_token')
      return `${registry} refused the token its token service issued (invalid_token): the registry and the token service disagree (signing certificate, issuer or service name), or their clocks differ`;
    if (auth === 'token')
      return reading
        ? `the token service of ${registry} accepted the credentials, but they do not grant reading this repository (check its name, and that the account may pull from it)`
        : `the token service of ${registry} accepted the credentials, but they do not grant this operation (pushing needs write access to the repository; in GitHub Actions, permissions: packages: write)`;
    return auth === 'credentials'
      ? checkCredentials(registry, source)
      : `log in with nixoci login ${registry}, or pass --creds USER:PASSWORD`;
  }
  if (info.status === 403 || info.codes.includes('DENIED'))
    return `the credentials for ${registry} lack permission to ${reading ? 'read' : 'push to'} this repository`;
  if (info.codes.includes('NAME_INVALID')) return 'the registry refused the repository name';
  if (info.codes.includes('MANIFEST_INVALID') || info.codes.includes('MANIFEST_BLOB_UNKNOWN')) {
    return 'the registry refused the manifest; run again with --verbose and report it if it persists';
  }
  if (info.codes.includes('DIGEST_INVALID') || info.codes.includes('BLOB_UPLOAD_INVALID')) {
    return 'a blob did not match its digest; delete the digest cache (~/.cache/nixoci) and try again';
  }
  if (info.codes.includes('TOOMANYREQUESTS') || info.status === 429)
    return 'the registry rate-limits this client; try again later';
  if (info.status >= 500) return 'the registry is failing; try again later';
  return 'run again with --verbose for the exchange that failed';
}

/**
 * A NixociError for an unexpected registry answer: `WHAT failed: OP: STATUS CODE: message`, or
 * `read REF: OP: …` when reading, as every read error of inspect and diff begins.
 */
export function registryError(
  what: string,
  op: string,
  info: RegistryErrorInfo,
  registry: string,
  auth: AuthUsed,
  /** The client only reads (inspect, diff): hints speak of pulling, not pushing. */
  reading = false,
  /** Where the credentials came from (`--creds`, a file, a helper), never their value. */
  source?: string,
  /** An auth file passed over because it could not be read. */
  unreadable?: string,
): NixociError {
  const code = info.status === 401 || info.status === 403 ? 'REGISTRY_AUTH' : 'REGISTRY';
  const err = new NixociError(code, `${reading ? what : `${what} failed`}: ${op}: ${info.summary}`, {
    hint: hintFor(info, registry, auth, reading, source, unreadable),
  });
  return Object.assign(err, { registryCodes: info.codes, status: info.status });
}

/**
 * The hint for refused credentials: where they came from (a stale docker config or helper entry
 * is the usual culprit), then the other ways to give them.
 */
export function checkCredentials(registry: string, source: string | undefined): string {
  const others = `--creds, NIXOCI_REGISTRY_USER/NIXOCI_REGISTRY_PASSWORD, or nixoci login ${registry}`;
  return source
    ? `check the credentials for ${registry}, which came from ${source} (or give others: ${others})`
    : `check the credentials for ${registry} (${others})`;
}

/** Registry error codes attached to a NixociError made by `registryError`. */
export function registryCodes(e: unknown): readonly string[] {
  return (e as { registryCodes?: readonly string[] } | undefined)?.registryCodes ?? [];
}

/**
 * A manifest PUT refused as invalid (400 MANIFEST_INVALID) or of an unsupported media type (415):
 * when what was sent was an OCI manifest or index, the usual cause is a registry without OCI
 * support (distribution before 2.7, Quay without FEATURE_GENERAL_OCI_SUPPORT), which takes only
 * Docker's media types. nixoci writes OCI only, so the hint names the ways round it; other
 * refusals are returned as they were.
 */
export function ociRefusal(e: NixociError, mediaType: string): NixociError {
  const codes = registryCodes(e);
  const status = (e as { status?: number }).status;
  const oci = mediaType === MediaType.ociManifest || mediaType === MediaType.ociIndex;
  const refused =
    status === 415 ||
    (status === 400 && (codes.includes('MANIFEST_INVALID') || codes.includes('UNSUPPORTED')));
  if (!oci || !refused) return e;
  const err = new NixociError(e.code, e.message, {
    hint:
      `${status === 415 ? 'the registry does not accept' : 'the registry likely does not accept'} OCI image manifests (${mediaType}), only Docker's: ` +
      'nixoci writes OCI manifests only and has no option for Docker media types; enable OCI support on the registry ' +
      '(Quay: FEATURE_GENERAL_OCI_SUPPORT; distribution 2.7 or later), or build to oci:DIR and copy it with ' +
      'skopeo copy --format v2s2 oci:DIR docker://REGISTRY/REPO:TAG',
    cause: e,
  });
  return Object.assign(err, { registryCodes: codes, status });
}
