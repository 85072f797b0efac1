import { childProcess } from '../core/builtins.js';
import { NixociError } from '../core/errors.js';
import { shellQuote } from '../core/shell-quote.js';

export interface NixRunOptions {
  /** Receives the command line before it runs (for `--verbose`). */
  readonly log?: (line: string) => void;
  readonly signal?: AbortSignal;
  readonly bin?: string;
  /**
   * Receives each distinct `warning:` line of a run that succeeded (`nix: warning: Git tree '…' is
   * dirty`), prefixed with the command's name; with `log` set they were already among its lines.
   */
  readonly onWarning?: (line: string) => void;
}

/**
 * Runs a Nix command with an argument array (never through a shell) and returns its stdout. A
 * failure becomes one NIX_FAILED error carrying Nix's last lines of stderr.
 */
export function runNix(args: readonly string[], options: NixRunOptions = {}): Promise<string> {
  const env = nixFromEnv();
  const bin = options.bin ?? env ?? 'nix';
  // NIXOCI_NIX names the nix to run, and where nix-build and nix-store are: say so, not "install Nix"
  const checkEnv = `check NIXOCI_NIX=${env}: the nix command, with nix-build and nix-store beside it`;
  options.log?.(`running: ${[bin, ...args].map(shellQuote).join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = childProcess().spawn(bin, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      signal: options.signal,
    });
    const out: Buffer[] = [];
    const err: string[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    // --verbose: Nix's own lines (what it builds, fetches, warns of) as they come, or a long build
    // is minutes of silence on a terminal and in a CI log
    const name = bin.slice(bin.lastIndexOf('/') + 1);
    let partial = '';
    const tell = (text: string, end: boolean): void => {
      const lines = (partial + text).split('\n');
      partial = end ? '' : lines.pop()!;
      for (const l of lines) {
        const clean = l.replace(ANSI_ESCAPE, '').replace(CONTROL, '').trimEnd();
        if (clean !== '') options.log?.(`${name}: ${clean}`);
      }
    };
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      err.push(text);
      if (options.log) tell(text, false);
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') {
        reject(
          new NixociError(
            'NIX_NOT_FOUND',
            `cannot run ${bin}: ${bin.includes('/') ? 'no such file' : 'not found on PATH'}`,
            {
              hint:
                env !== undefined
                  ? checkEnv
                  : 'install Nix (Debian: apt-get install nix-bin) or pass --graph FILE with a ready closure graph',
            },
          ),
        );
      } else {
        reject(
          new NixociError('NIX_FAILED', `cannot run ${bin}: ${e.message}`, {
            cause: e,
            ...(env !== undefined && { hint: checkEnv }),
          }),
        );
      }
    });
    child.on('close', (code, sig) => {
      if (options.log) tell('', true);
      const lines = err
        .join('')
        .replace(ANSI_ESCAPE, '')
        .replace(CONTROL, '')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.length > 0);
      if (code === 0) {
        for (const w of new Set(lines.filter((l) => l.startsWith('warning:') && !OWN_WARNING.test(l))))
          options.onWarning?.(`${name}: ${w}`);
        return resolve(Buffer.concat(out).toString('utf8'));
      }
      const { shown, logCommand } = nixError(lines);
      // Nix 2.3 and older know neither the flag nor the nix subcommands' current shape
      const tooOld = lines.some((l) =>
        l.startsWith("error: unrecognised flag '--extra-experimental-features'"),
      );
      // A binary cache Nix could not reach is only a warning; its error is then "no substituter
      // can build it" (nix build) or "build of … failed" (nix-store --realise), which reads as if
      // the cache lacked the path.
      const store = lines.find((l) => STORE_ACCESS.test(l));
      // A failed build has its own reason.
      const unreachable = lines.some((l) => BUILD_FAILED.test(l))
        ? undefined
        : lines.findLast((l) => UNREACHABLE.test(l))?.replace(/^warning: /, '');
      if (unreachable !== undefined) shown.push(`${SUBSTITUTER_UNREACHABLE}: ${unreachable}`);
      const tail = shown.join(' | ') || `exit ${code ?? sig}`;
      const what = args[0] !== undefined && !args[0].startsWith('-') ? `${bin} ${args[0]}` : bin;
      reject(
        new NixociError('NIX_FAILED', `${what} failed: ${tail}`, {
          hint: tooOld
            ? `nixoci needs Nix 2.4 or newer; check \`${bin} --version\``
            : store !== undefined
              ? storeHint(store)
              : unreachable !== undefined
                ? SUBSTITUTER_HINT
                : logCommand !== undefined
                  ? `fix the build; its whole log: ${logCommand}`
                  : 'fix the Nix error it reports; --verbose shows the full nix command nixoci ran',
        }),
      );
    });
  });
}

/**
 * The lines of Nix's stderr worth one error line. Nix's error is the last `error:` line and the few
 * after it (position, source line); the last lines alone may be only the source excerpt or the
 * builder's output. A failed build is the builder's error and the end of its log, where the reason
 * usually is (Nix prints the log's last lines oldest first), even when a later `error: 1
 * dependencies of derivation … failed to build` closes the output; the `nix log` command Nix names
 * goes in the hint.
 */
function nixError(lines: readonly string[]): { shown: string[]; logCommand?: string } {
  const at = lines.findIndex((l) => BUILD_FAILED.test(l));
  if (at < 0) {
    const last = lines.findLastIndex((l) => l.startsWith('error:'));
    return { shown: last >= 0 ? lines.slice(last, last + 4) : lines.slice(-3) };
  }
  const next = lines.findIndex((l, i) => i > at && l.startsWith('error:'));
  const block = lines.slice(at, next < 0 ? lines.length : next);
  // the error and its reason (newer Nix: "Reason: builder failed …"), up to the outputs or the log
  const head = block.findIndex(
    (l, i) => i > 0 && /^(last \d+ log lines:|output paths:|for full logs)/i.test(l),
  );
  const log = block.filter((l) => l.startsWith('>')).slice(-LOG_LINES_SHOWN);
  const logCommand = /\bnix log (\S+\.drv)\b/.exec(block.join('\n'))?.[1];
  return {
    shown: [...block.slice(0, head < 0 ? 1 : head), ...log],
    ...(logCommand !== undefined && { logCommand: `nix log ${logCommand}` }),
  };
}

// Nix ≤ 2.23: "error: builder for '…drv' failed with exit code 1;"; newer: "error: Cannot build
// '…drv'." (or "error: build of '…drv' failed: Cannot build '…drv'."), then "Reason: …"
const BUILD_FAILED =
  /^error: (builder for '[^']+\.drv' failed|(build of '[^']+' failed: )?Cannot build '[^']+\.drv'\.$)/;
const LOG_LINES_SHOWN = 5;

// Nix cannot open its database, lock files or daemon socket (under its state directory, usually
// /nix/var/nix): a user who is not the single-user store's owner, or no nix-daemon running.
const STORE_ACCESS =
  /^error: .*\/var\/nix\/.*: (Permission denied|Operation not permitted|No such file or directory|Connection refused)$/;

function storeHint(line: string): string {
  if (/daemon-socket\/socket'?: (No such file or directory|Connection refused)$/.test(line))
    return 'no nix-daemon answers: start it (multi-user Nix), or for a single-user Nix leave NIX_REMOTE unset and run as the user who owns the store';
  const uid = process.getuid?.();
  return `this user${uid === undefined ? '' : ` (uid ${uid})`} may not use the Nix store: run nixoci as the user who owns it (single-user Nix), or through a nix-daemon this user may reach (multi-user Nix)`;
}

// Of how nixoci runs Nix, not of the user's build: `nix-store --realise` without a GC root (the
// image is written from the store paths before anything could collect them).
const OWN_WARNING = /^warning: you did not specify '--add-root'/;

// the warning Nix gives when all its tries of a download failed (those it retries are "warning:
// error: … retrying in …")
const UNREACHABLE = /^warning: unable to download '[^']+': /;
/** Said in a NIX_FAILED message when a substituter could not be reached. */
export const SUBSTITUTER_UNREACHABLE = 'a substituter was unreachable';
export const SUBSTITUTER_HINT =
  'check that Nix reaches its substituters (substituters in nix.conf, the network, a proxy), or build the paths here';

/** NIXOCI_NIX, the nix command to run; empty is unset, as for other path variables. */
export function nixFromEnv(): string | undefined {
  return process.env.NIXOCI_NIX || undefined;
}

// Nix passes builder output on as it is: colour escapes, NULs, other control characters.
const ANSI_ESCAPE = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;

/** Arguments that make the newer `nix` subcommands available on any Nix configuration. */
export const NIX_FEATURES = ['--extra-experimental-features', 'nix-command flakes'] as const;
