// nix32: Nix's base-32 alphabet (no e, o, u, t), least significant digit last in the string.
const NIX32 = '0123456789abcdfghijklmnpqrsvwxyz';

function nix32Decode(s: string, bytes: number): Buffer | null {
  const out = Buffer.alloc(bytes);
  for (let n = 0; n < s.length; n++) {
    const c = s[s.length - n - 1]!;
    const digit = NIX32.indexOf(c);
    if (digit < 0) return null;
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    out[i]! |= (digit << j) & 0xff;
    const carry = digit >> (8 - j);
    if (i + 1 < bytes) out[i + 1]! |= carry;
    else if (carry) return null;
  }
  return out;
}

/**
 * Normalises a sha256 NAR hash to SRI form (`sha256-<base64>`). Accepts SRI, `sha256:<nix32>` and
 * `sha256:<hex>`; returns null for anything else.
 */
export function normaliseNarHash(h: string): string | null {
  let raw: Buffer | null = null;
  if (h.startsWith('sha256-')) {
    const b = Buffer.from(h.slice(7), 'base64');
    raw = b.length === 32 && b.toString('base64') === h.slice(7) ? b : null;
  } else if (h.startsWith('sha256:')) {
    const v = h.slice(7);
    if (/^[0-9a-f]{64}$/.test(v)) raw = Buffer.from(v, 'hex');
    else if (v.length === 52) raw = nix32Decode(v, 32);
  }
  return raw ? `sha256-${raw.toString('base64')}` : null;
}
