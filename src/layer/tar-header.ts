import { isUtf8 } from 'node:buffer';

/**
 * The one tar writer of nixoci: encodes headers byte for byte, setting every field itself so that
 * the same entry gives the same bytes on any machine. Format: POSIX ustar, with a PAX extended
 * header in front of an entry whose name, link target, size, uid or gid does not fit ustar's fields.
 *
 * Changing anything here changes every layer digest: bump TAR_FORMAT_VERSION (it keys the digest
 * cache) and say so in CHANGELOG.md.
 */
// 3: names and link targets that are not UTF-8 are raw bytes in ustar fields, or in PAX records
// after `hdrcharset=BINARY` (2 put them in plain PAX records, which bsdtar refuses to convert).
export const TAR_FORMAT_VERSION = 3;

export const BLOCK = 512;
export const MTIME = 1;
const MAX_OCTAL_11 = 0o77777777777; // 8 GiB - 1, the largest size ustar's 12-byte field holds
const MAX_OCTAL_7 = 0o7777777; // the largest uid/gid ustar's 8-byte fields hold
const PAX_NAME = Buffer.from('././@PaxHeader');
const HDRCHARSET_BINARY = paxRecord('hdrcharset', Buffer.from('BINARY'));

export type EntryType = 'file' | 'dir' | 'symlink';

export interface TarEntry {
  /** Relative path without leading `/`, and without a trailing `/` even for directories. */
  readonly name: Buffer;
  readonly type: EntryType;
  readonly mode: number;
  /** Content size; 0 for directories and symlinks. */
  readonly size: number;
  readonly linkTarget?: Buffer;
  /** Owner; 0 (root) unless given. Only synthetic entries of the customisation layer set it. */
  readonly uid?: number;
  readonly gid?: number;
}

export const padding = (size: number): number => (BLOCK - (size % BLOCK)) % BLOCK;

/** Bytes the header(s) of `e` take, PAX header included. */
export function headerSize(e: TarEntry): number {
  const pax = paxRecords(e);
  return pax ? BLOCK + pax.length + padding(pax.length) + BLOCK : BLOCK;
}

/** Bytes the whole entry takes: header(s), content and padding. */
export function entrySize(e: TarEntry): number {
  return headerSize(e) + e.size + padding(e.size);
}

/** Encodes the header(s) of `e` (PAX header first when needed). */
export function encodeHeader(e: TarEntry): Buffer {
  const tarName = e.type === 'dir' ? Buffer.concat([e.name, Buffer.from('/')]) : e.name;
  const pax = paxRecords(e);
  const split = splitName(tarName);
  const main = ustarBlock({
    name: split ? split.name : tarName.subarray(0, 100),
    prefix: split ? split.prefix : Buffer.alloc(0),
    mode: e.mode,
    size: e.size > MAX_OCTAL_11 ? 0 : e.size,
    typeflag: e.type === 'file' ? '0' : e.type === 'dir' ? '5' : '2',
    linkname:
      e.linkTarget && e.linkTarget.length <= 100 ? e.linkTarget : (e.linkTarget?.subarray(0, 100) ?? null),
    uid: e.uid ?? 0,
    gid: e.gid ?? 0,
  });
  if (!pax) return main;
  const paxHeader = ustarBlock({
    name: PAX_NAME,
    prefix: Buffer.alloc(0),
    mode: 0o644,
    size: pax.length,
    typeflag: 'x',
    linkname: null,
    uid: 0,
    gid: 0,
  });
  return Buffer.concat([paxHeader, pax, Buffer.alloc(padding(pax.length)), main]);
}

export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

function paxRecords(e: TarEntry): Buffer | null {
  const records: Buffer[] = [];
  const tarName = e.type === 'dir' ? Buffer.concat([e.name, Buffer.from('/')]) : e.name;
  const path = splitName(tarName) ? null : tarName;
  const linkpath = e.linkTarget && e.linkTarget.length > 100 ? e.linkTarget : null;
  // PAX values are UTF-8 unless this record says otherwise: readers that convert names to the
  // locale's charset (bsdtar) refuse other bytes, so a header holding such a name says BINARY.
  // It comes first, so that it applies to the records after it in readers that go in order.
  if ((path && !isUtf8(path)) || (linkpath && !isUtf8(linkpath))) records.push(HDRCHARSET_BINARY);
  if (path) records.push(paxRecord('path', path));
  if (linkpath) records.push(paxRecord('linkpath', linkpath));
  if (e.size > MAX_OCTAL_11) records.push(paxRecord('size', Buffer.from(String(e.size))));
  // ustar holds 7 octal digits of uid/gid; a larger one (--user app:20000000) needs a record.
  if ((e.uid ?? 0) > MAX_OCTAL_7) records.push(paxRecord('uid', Buffer.from(String(e.uid))));
  if ((e.gid ?? 0) > MAX_OCTAL_7) records.push(paxRecord('gid', Buffer.from(String(e.gid))));
  return records.length > 0 ? Buffer.concat(records) : null;
}

/** A PAX record `"<len> <key>=<value>\n"`, where len counts the whole record including itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = 1 + key.length + 1 + value.length + 1; // ' ' key '=' value '\n'
  let len = rest + String(rest).length;
  if (String(len).length !== String(rest).length) len = rest + String(len).length;
  return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from('\n')]);
}

/**
 * Splits a name into ustar's prefix (≤155) and name (≤100) at a `/`, or returns null when it cannot
 * be stored in ustar fields (then a PAX `path` record carries it). Non-ASCII UTF-8 names also go to
 * PAX, so that readers get them as UTF-8. A name that is not UTF-8 has no charset a PAX record could
 * name but BINARY, which not every reader knows: it stays in ustar's fields, raw, when it fits.
 */
function splitName(name: Buffer): { name: Buffer; prefix: Buffer } | null {
  if (!isAscii(name) && isUtf8(name)) return null;
  if (name.length <= 100) return { name, prefix: Buffer.alloc(0) };
  if (name.length > 256) return null;
  // Search for the last '/' that leaves both parts within bounds.
  for (let i = Math.min(155, name.length - 1); i > 0; i--) {
    if (name[i] === 0x2f && name.length - i - 1 <= 100 && name.length - i - 1 > 0) {
      return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
    }
  }
  return null;
}

function isAscii(b: Buffer): boolean {
  for (const byte of b) if (byte >= 0x80) return false;
  return true;
}

interface UstarFields {
  name: Buffer;
  prefix: Buffer;
  mode: number;
  size: number;
  typeflag: string;
  linkname: Buffer | null;
  uid: number;
  gid: number;
}

function ustarBlock(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK); // zero-filled: every unused byte is NUL
  f.name.copy(b, 0, 0, 100);
  octal(b, 100, 8, f.mode);
  // An owner too large for the field is 0 here and in a PAX record, as a size over 8 GiB is.
  octal(b, 108, 8, f.uid > MAX_OCTAL_7 ? 0 : f.uid);
  octal(b, 116, 8, f.gid > MAX_OCTAL_7 ? 0 : f.gid);
  octal(b, 124, 12, f.size);
  octal(b, 136, 12, MTIME);
  b.write('        ', 148, 8, 'latin1'); // checksum placeholder: eight spaces
  b.write(f.typeflag, 156, 1, 'latin1');
  if (f.linkname) f.linkname.copy(b, 157, 0, 100);
  b.write('ustar\0', 257, 6, 'latin1');
  b.write('00', 263, 2, 'latin1');
  // Names only for root: another uid has no name that holds on every machine, so readers use the number.
  if (f.uid === 0) b.write('root', 265, 32, 'latin1'); // uname
  if (f.gid === 0) b.write('root', 297, 32, 'latin1'); // gname
  octal(b, 329, 8, 0); // devmajor
  octal(b, 337, 8, 0); // devminor
  f.prefix.copy(b, 345, 0, 155);
  let sum = 0;
  for (const byte of b) sum += byte;
  // Checksum: six octal digits, NUL, space (the form GNU tar and Go's archive/tar write).
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

/** Zero-padded octal with a trailing NUL, filling `width` bytes. */
function octal(b: Buffer, offset: number, width: number, value: number): void {
  b.write(value.toString(8).padStart(width - 1, '0') + '\0', offset, width, 'latin1');
}
