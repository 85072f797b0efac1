/**
 * Every failure nixoci reports is a NixociError: a stable `code` for scripts and tests, a message of
 * the form "what failed: why", and a hint that says what to do. The CLI prints `message` and `hint`
 * on one line each and never a stack trace.
 */
export type ErrorCode =
  | 'USAGE'
  | 'GRAPH_READ'
  | 'GRAPH_JSON'
  | 'GRAPH_SHAPE'
  | 'GRAPH_DANGLING'
  | 'GRAPH_DUPLICATE'
  | 'GRAPH_EMPTY'
  | 'STORE_PATH_INVALID'
  | 'STORE_PATH_MISSING'
  | 'STORE_READ'
  | 'STORE_CHANGED'
  | 'NIX_FAILED'
  | 'NIX_NOT_FOUND'
  | 'DEVBOX'
  | 'CUSTOMISE'
  | 'TARGET_INVALID'
  | 'TARGET_WRITE'
  | 'REFERENCE_INVALID'
  | 'IMAGE_NOT_FOUND'
  | 'IMAGE_INVALID'
  | 'IMAGE_READ'
  | 'REGISTRY'
  | 'REGISTRY_AUTH'
  | 'REGISTRY_UNREACHABLE'
  | 'CREDENTIALS'
  | 'DAEMON_UNREACHABLE'
  | 'DAEMON'
  | 'CACHE'
  | 'ABORTED'
  | 'INTERNAL';

export class NixociError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NixociError';
    this.code = code;
    this.hint = options.hint;
  }
}

/** The error an aborted operation rejects with (name `AbortError`, as Node's own). */
export function abortError(): Error {
  const e = new Error('The operation was aborted');
  e.name = 'AbortError';
  return e;
}

export const isNixociError = (e: unknown): e is NixociError => e instanceof NixociError;

/** The one-line reason of an unknown error, for "what failed: why" messages. */
export function reason(e: unknown): string {
  // A zod error's message is its issues as pretty-printed JSON, whose first line is "[".
  const issues = e instanceof Error && e.name === 'ZodError' ? (e as { issues?: unknown }).issues : undefined;
  if (Array.isArray(issues)) {
    const issue = issues[0] as { path?: unknown[]; message?: string } | undefined;
    const at = issue?.path && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    return `${at}${issue?.message ?? 'invalid'}`;
  }
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    // JSON.parse quotes the text it stopped at (`Unexpected token 'h', "hello\nworld" is not valid
    // JSON`): cut at its first line break, the message ended inside the quote. Its tail repeats
    // what every caller says ("…: not valid JSON: …").
    const msg =
      e.name === 'SyntaxError'
        ? e.message.replace(/\r?\n/g, '\\n').replace(/ is not valid JSON$/, '')
        : (e.message.split('\n')[0] ?? '');
    return code && !msg.includes(code) ? `${code}: ${msg}` : msg;
  }
  return String(e);
}

/**
 * An untrusted value for a message: JSON-quoted (control characters escaped) and cut to `max`
 * characters, so a hostile input cannot make an error message of megabytes.
 */
export function quote(s: string, max = 160): string {
  return s.length > max
    ? `${JSON.stringify(s.slice(0, max)).slice(0, -1)}…" (${s.length} characters)`
    : JSON.stringify(s);
}

/**
 * The hint for a failure that is the process running out of file descriptors (EMFILE, or ENFILE
 * system-wide) anywhere in the error's chain of causes: whatever failed to open (a connection, a
 * store file), the cure is the limit or fewer connections, not the registry or the store.
 */
export function fileLimitHint(e: unknown): string | undefined {
  return hasCode(e, 'EMFILE', 'ENFILE')
    ? 'nixoci ran out of file descriptors: raise the limit (`ulimit -n 1024`) or lower --concurrency'
    : undefined;
}

/**
 * The hint for a write that failed because the filesystem is full (ENOSPC, or EDQUOT: the user's
 * quota) anywhere in the error's chain of causes: "check that the directory is writable" sends
 * the user looking at permissions.
 */
export function diskFullHint(e: unknown): string | undefined {
  return hasCode(e, 'ENOSPC', 'EDQUOT')
    ? 'that filesystem is full (or your quota used up): free some space there, or write somewhere else'
    : undefined;
}

function hasCode(e: unknown, ...codes: string[]): boolean {
  for (let c: unknown = e, depth = 0; c !== null && typeof c === 'object' && depth < 8; depth++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string' && codes.includes(code)) return true;
    c = (c as { cause?: unknown }).cause;
  }
  return false;
}
