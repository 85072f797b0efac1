/** A parsed `WWW-Authenticate` challenge (RFC 7235), as registries send them. */
export interface Challenge {
  /** Lowercased: `basic`, `bearer`. */
  readonly scheme: string;
  /** Parameter names lowercased: `realm`, `service`, `scope`, `error`. */
  readonly params: Readonly<Record<string, string>>;
}

/**
 * Parses every challenge in a header value, e.g.
 * `Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"`.
 * Quoted values may contain commas and escaped quotes.
 */
export function parseChallenges(header: string | null): Challenge[] {
  if (!header) return [];
  const out: { scheme: string; params: Record<string, string> }[] = [];
  let i = 0;
  const skip = (chars: RegExp): void => {
    while (i < header.length && chars.test(header[i]!)) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < header.length && /[A-Za-z0-9!#$%&'*+.^_`|~/-]/.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  while (i < header.length) {
    skip(/[\s,]/);
    const name = token();
    if (name === '') {
      i++;
      continue;
    }
    skip(/\s/);
    if (header[i] !== '=') {
      out.push({ scheme: name.toLowerCase(), params: {} });
      continue;
    }
    i++;
    skip(/\s/);
    let value = '';
    if (header[i] === '"') {
      i++;
      while (i < header.length && header[i] !== '"') {
        if (header[i] === '\\') i++;
        value += header[i] ?? '';
        i++;
      }
      i++;
    } else {
      const start = i;
      while (i < header.length && header[i] !== ',' && !/\s/.test(header[i]!)) i++;
      value = header.slice(start, i);
    }
    const current = out[out.length - 1];
    if (current) current.params[name.toLowerCase()] = value;
  }
  return out;
}

/** The challenge to answer: bearer before basic, as docker prefers. */
export function pickChallenge(challenges: readonly Challenge[]): Challenge | undefined {
  return challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
}
