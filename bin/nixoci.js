#!/bin/sh
':' //; case "${NODE_OPTIONS-}" in *openssl-ca*) ;; *) if [ -n "${NODE_EXTRA_CA_CERTS-}" ]; then NIXOCI_DEFERRED_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS; export NIXOCI_DEFERRED_EXTRA_CA_CERTS; unset NODE_EXTRA_CA_CERTS; fi ;; esac; [ -n "${MALLOC_ARENA_MAX-}" ] || { MALLOC_ARENA_MAX=2; export MALLOC_ARENA_MAX; }; exec node "$0" "$@"
// nixoci's entry point: a shell script and a CommonJS module in one file (bin/package.json). The
// shell reads the first two lines (JavaScript sees a string and a comment) and starts Node without
// NODE_EXTRA_CA_CERTS, whose certificates Node 20 otherwise parses at start-up, ~35 ms on every run
// including those that never open a TLS connection; nixoci adds them itself to the TLS connections
// it makes (src/core/tls-trust.ts), and child processes get the variable back below.
// The shell part also caps glibc's malloc arenas at 2 (MALLOC_ARENA_MAX, unless set): the main
// thread, two layer workers and the libuv pool each allocate and free 1 MiB chunks, and with an
// arena per thread freed chunks stay with the process (a cold zstd push peaked ~20 MB higher, a
// run with three destinations ~40 MB), at no cost in time here (docs/design-choices.md).
// `node bin/nixoci.js` skips the shell part and works the same, just without these savings.
//
// Start-up is most of an inner-loop run (a no-change push does ~20 ms of work after Node has
// started), so before handing over to the CLI this file also:
//  - keeps V8 from optimising undici's WebAssembly HTTP parser on a background thread, which the
//    process must wait for at exit (~60 ms; the baseline compiler is plenty for a few headers);
//  - compiles the bundled CLI (dist/nixoci.cjs, built by `npm run build`) with a V8 code cache
//    kept in $XDG_CACHE_HOME/nixoci/v8, which saves ~30 ms of compiling on every run after the
//    first (NIXOCI_NO_CODE_CACHE=1 turns it off);
//  - exits as soon as a command has succeeded, instead of waiting for idle keep-alive sockets.
// Without the bundle (a plain `tsc` build) it runs dist/cli/main.js.
'use strict';
const { createHash, randomBytes } = require('node:crypto');
const {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} = require('node:fs');
const Module = require('node:module');
const { homedir } = require('node:os');
const { dirname, isAbsolute, join } = require('node:path');
const { pathToFileURL } = require('node:url');
const { setFlagsFromString } = require('node:v8');
const { Script } = require('node:vm');

if (process.env.NIXOCI_DEFERRED_EXTRA_CA_CERTS && !process.env.NODE_EXTRA_CA_CERTS)
  process.env.NODE_EXTRA_CA_CERTS = process.env.NIXOCI_DEFERRED_EXTRA_CA_CERTS;

setFlagsFromString('--liftoff-only');

/** Code caches kept (~0.5–0.8 MB each; one per command and build of nixoci). */
const MAX_CODE_CACHES = 16;
/** A code cache larger than this is not one of ours (they are under 1 MB). */
const MAX_CODE_CACHE_BYTES = 64 << 20;

const root = dirname(__dirname);
const bundle = join(root, 'dist', 'nixoci.cjs');
let saveCodeCache = () => {};
const unbundled = join(root, 'dist', 'cli', 'main.js');
if (!existsSync(bundle) && !existsSync(unbundled)) {
  process.stderr.write(
    `nixoci: error: nixoci is not built (no ${bundle})\nhint: run \`npm ci && npm run build\` in ${root}\n`,
  );
  process.exit(1);
}

// Standard output that fails (a reader that stopped early: `nixoci inspect … | head`; a full disk)
// must not end in Node's unhandled-error stack trace. A reader gone is no error of ours (as with
// SIGPIPE for other tools, the rest of the output is dropped quietly); any other failure is one line
// and exit code 1. Commands that stream to stdout (`--to docker-archive:-`) report it themselves.
let stdoutError;
process.stdout.on('error', (e) => {
  stdoutError ??= e;
});
// Standard error that fails (`nixoci push -v 2>&1 | head`; a terminal that hung up, EIO) has nowhere
// to report to: its messages are dropped and the command goes on. Unhandled, the first failed write
// ended the process with Node's stack trace in the middle of a push, upload sessions left open.
process.stderr.on('error', () => {});
// A terminal or SSH session that closes sends SIGHUP: main() stops the run as it does on Ctrl-C
// (nix stopped, upload sessions cancelled, temp files removed), then the process ends by that
// signal once the winding down is done, as shells expect of a hung-up job. Exiting instead made
// Node 20 abort (its reset of the terminal's modes at exit fails on a terminal that hung up), which
// can leave a core dump.
let hungUp = false;
process.once('SIGHUP', () => {
  hungUp = true;
});
process.on('exit', () => {
  if (hungUp) process.kill(process.pid, 'SIGHUP');
});

// A stop signal before the CLI has taken over (loading it takes tens of milliseconds, more on a busy
// machine): nothing has been started, so the run ends as an interrupted one does (exit 130), not by
// the signal's default action. main() puts its own handlers in place in the same turn as these go.
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const stoppedEarly = () => {
  process.stderr.write('nixoci: interrupted\n');
  process.exit(130);
};
for (const s of STOP_SIGNALS) process.once(s, stoppedEarly);

void (async () => {
  const { main } = existsSync(bundle) ? loadBundle(bundle) : await import(pathToFileURL(unbundled).href);
  for (const s of STOP_SIGNALS) process.off(s, stoppedEarly);
  const code = await main(process.argv.slice(2));
  saveCodeCache();
  process.exitCode = code;
  if (code === 0) {
    // A successful main() has awaited everything the command started: flush the output and go.
    // After a failure or an interruption, work may still be winding down (upload sessions being
    // cancelled), so the process ends when that is done.
    const flushed = (stream) =>
      new Promise((resolve) => (stream.writableLength === 0 ? resolve() : stream.write('', resolve)));
    await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
    await new Promise((resolve) => setImmediate(resolve)); // a failed write's 'error' event
    if (stdoutError && stdoutError.code !== 'EPIPE') {
      process.stderr.write(`nixoci: error: cannot write to standard output: ${stdoutError.message}\n`);
      process.exit(1);
    }
    process.exit(0);
  }
})();

/** Runs the CommonJS bundle, compiled with the code cache when there is a valid one. */
function loadBundle(file) {
  const source = readFileSync(file, 'utf8');
  const cacheFile = codeCacheFile(source);
  const cachedData = cacheFile ? readCodeCache(cacheFile) : undefined;
  const script = new Script(Module.wrap(source), { filename: file, cachedData });
  if (cacheFile && (!cachedData || script.cachedDataRejected)) {
    // Written after the command, so that it holds the functions the command compiled too.
    saveCodeCache = () => {
      // unguessable and made exclusively ('wx'): a symlink planted beside the cache is never followed
      // (the name of src/core/temp-name.ts, whose pattern removeStaleFiles is given below)
      const tmp = `${cacheFile}.${process.pid}.${randomBytes(8).toString('hex')}.tmp`;
      try {
        // the bundle's own mkdir -p (src/core/make-dirs.ts): Node's recursive mkdirSync spins
        // forever on a parent that cannot hold the child (XDG_CACHE_HOME under /proc)
        module.exports.makeDirs(dirname(cacheFile));
        const data = script.createCachedData();
        writeFileSync(tmp, Buffer.concat([createHash('sha256').update(data).digest(), data]), { flag: 'wx' });
        renameSync(tmp, cacheFile);
        pruneCodeCaches(dirname(cacheFile));
        // a run killed while writing (SIGKILL, power) left its temp file: removed once it is gone
        module.exports.removeStaleFiles(dirname(cacheFile), /\.(\d+)(?:\.[0-9a-f]{16})?\.tmp$/);
      } catch {
        // best effort: no cache means a slower start next time, nothing else
        try {
          rmSync(tmp, { force: true });
        } catch {
          // the directory is not there or not ours
        }
      }
    };
  }
  const module = { exports: {} };
  script.runInThisContext()(module.exports, Module.createRequire(file), module, file, dirname(file));
  return module.exports;
}

/**
 * The code cache in `file` when it is whole: the file is the sha256 of the cached data, then the
 * data. V8 checks that a cache belongs to its version, flags and source, but not that its bytes are
 * intact (Node 20's release build skips the checksum): a cache damaged on disk (bit rot, a
 * truncated copy, a restored CI cache) crashed every run with a V8 fatal error or a segfault.
 * Opened non-blocking and read only when it is a regular file: a FIFO there would block for ever.
 */
function readCodeCache(file) {
  let bytes;
  let fd;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > MAX_CODE_CACHE_BYTES) return undefined;
    bytes = readFileSync(fd);
  } catch {
    return undefined; // first run with this bundle: the cache is written after the command
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  const data = bytes.subarray(32);
  if (bytes.length <= 32 || !createHash('sha256').update(data).digest().equals(bytes.subarray(0, 32)))
    return undefined;
  return data;
}

/**
 * Keeps the newest MAX_CODE_CACHES files: every new build of nixoci (and every Node version) starts
 * a new set, and the old ones would otherwise stay forever.
 */
function pruneCodeCaches(dir) {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.bin'))
    .map((f) => ({ f, t: statSync(join(dir, f)).mtimeMs }))
    .sort((a, b) => b.t - a.t);
  for (const { f } of files.slice(MAX_CODE_CACHES)) rmSync(join(dir, f), { force: true });
}

/**
 * Where this bundle's code cache lives, or null when caching is off. V8 checks its version and
 * flags against the cache but not the source, so the name is a hash of the bundle and the runtime.
 * One cache per command: each holds the functions its command compiled (push and load share
 * little beyond start-up).
 */
function codeCacheFile(source) {
  if (process.env.NIXOCI_NO_CODE_CACHE) return null;
  // a relative XDG_CACHE_HOME is ignored, as the XDG spec says (and as src/layer/cache.ts does)
  const xdg = process.env.XDG_CACHE_HOME;
  const root = xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache');
  const key = createHash('sha256')
    .update(`${process.version} ${process.arch}\0`)
    .update(source)
    .digest('hex')
    .slice(0, 32);
  const command = /^[a-z]{1,16}$/.test(process.argv[2] ?? '') ? process.argv[2] : 'other';
  return join(root, 'nixoci', 'v8', `${key}-${command}.bin`);
}
