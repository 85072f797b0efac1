import { isUtf8 } from 'node:buffer';

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * Text for the terminal, from something nixoci does not control (an image's tags or history, a
 * server's answer): every C0/C1 control character becomes `\xNN`, unless `keep` gives it another
 * replacement (a line break kept, a tab made a space), so none reaches the terminal as it is.
 */
export function escapeControls(s: string, keep: (c: string) => string | undefined = () => undefined): string {
  return s.replace(CONTROL, (c) => keep(c) ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * Bytes from outside (a store file's name, a symlink's target) as text for messages: UTF-8 as
 * such; every byte that is not part of valid UTF-8, and every control character, as `\xNN`; a
 * backslash doubled, so that `\xNN` always means a byte. Never U+FFFD, which would hide which bytes
 * the name holds, and never the raw bytes, which a terminal would misread.
 */
export function printableBytes(b: Uint8Array): string {
  let out = '';
  for (let i = 0; i < b.length;) {
    const n = utf8Length(b[i]!);
    const seq = b.subarray(i, i + n);
    if (n > 0 && seq.length === n && isUtf8(seq)) {
      const c = Buffer.from(seq).toString('utf8');
      out += c === '\\' ? '\\\\' : escapeControls(c);
      i += n;
    } else {
      out += `\\x${b[i]!.toString(16).padStart(2, '0')}`;
      i += 1;
    }
  }
  return out;
}

/** The length of the UTF-8 sequence a lead byte starts, or 0 for a byte no sequence starts with. */
function utf8Length(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}
