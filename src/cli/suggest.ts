import { shellQuote } from '../core/shell-quote.js';

/**
 * "did you mean …?" for a mistyped command or flag, and nixoci's spelling of what other tools
 * (docker, skopeo, crane, Nix) call something else. Suggestions only: nothing is run in their place.
 */

/** Levenshtein distance, with a swap of two neighbours (`--arhc`) counted as one edit. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  return d[a.length]![b.length]!;
}

/**
 * The candidate nearest to `word`, if near enough to be a typo: at most 2 edits, and fewer than a
 * third of the word (`--tag` is not a typo of `--tls`); a prefix (`--insecure` for
 * `--insecure-registry`) counts too. Ties go to the first candidate.
 */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 4 ? 1 : editDistance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.min(2, Math.max(1, Math.floor(word.length / 3))) ? best : undefined;
}

/** Docker's and Nix's names of the architectures nixoci takes. */
const ARCH_ALIASES: Readonly<Record<string, string>> = {
  'linux/amd64': 'amd64',
  'linux/arm64': 'arm64',
  'linux/arm64/v8': 'arm64',
  'arm64/v8': 'arm64',
  'x86_64-linux': 'amd64',
  'aarch64-linux': 'arm64',
  x86_64: 'amd64',
  aarch64: 'arm64',
};

/** `--arch linux/arm64` or `--arch x86_64-linux,aarch64-linux`: the --arch nixoci takes, if every item maps. */
export function archSuggestion(value: string): string | undefined {
  const items = value
    .split(',')
    .map(
      (a) => ARCH_ALIASES[a.trim()] ?? (a.trim() === 'amd64' || a.trim() === 'arm64' ? a.trim() : undefined),
    );
  if (items.some((a) => a === undefined)) return undefined;
  return `did you mean --arch ${items.join(',')}?`;
}

/**
 * The hint for an unknown flag: another tool's spelling mapped to nixoci's (only to a flag the
 * command has), else the nearest of the command's flags. `argv` gives the value that follows, for
 * `--platform linux/arm64` → `--arch arm64`. A value is never echoed for credentials.
 */
export function flagSuggestion(
  flag: string,
  argv: readonly string[],
  longFlags: readonly string[],
): string | undefined {
  const has = (f: string): boolean => longFlags.includes(f);
  const eq = argv.find((a) => a.startsWith(`${flag}=`));
  const i = argv.indexOf(flag);
  const next = argv[i + 1];
  const value =
    eq !== undefined
      ? eq.slice(flag.length + 1)
      : i >= 0 && next !== undefined && !next.startsWith('-')
        ? next
        : undefined;
  const name = flag.replace(/^-+/, '');
  if (name === 'platform' && has('arch')) {
    const arch = value === undefined ? undefined : archSuggestion(value);
    return (
      arch ?? 'did you mean --arch? (nixoci takes the architecture alone: --arch amd64, arm64 or amd64,arm64)'
    );
  }
  if (/^(dest|src)-creds$/.test(name) && has('creds')) return 'did you mean --creds USER:PASSWORD?';
  if (/^((dest|src)-)?tls-verify$/.test(name) && has('insecure-registry')) {
    // a boolean flag in skopeo: the word after it is only its value when joined with '='
    if (eq === undefined || value === 'true')
      return 'TLS is verified by default; leave it out (--insecure-registry HOST talks plain HTTP to HOST)';
    // the registry of a docker:// argument, when there is one
    const host = argv.map((a) => /^docker:\/\/([^/]+)\//.exec(a)?.[1]).find((h) => h !== undefined);
    return `did you mean --insecure-registry ${host !== undefined ? shellQuote(host) : 'HOST'}?`;
  }
  if (!flag.startsWith('--')) return undefined;
  const near = nearest(name, longFlags);
  return near === undefined ? undefined : `did you mean --${near}?`;
}
