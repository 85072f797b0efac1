// The "plain Node loop" yardstick of DESIGN.md: read every regular file of the given store
// paths (synchronous 1 MiB reads, no tar, no writes) and sha256 it.
import { createHash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';

const buf = Buffer.allocUnsafe(1 << 20);
let total = 0;

function hashFile(p) {
  const fd = openSync(p, 'r');
  const h = createHash('sha256');
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; total += n) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

function walk(p) {
  const st = lstatSync(p);
  if (st.isDirectory()) for (const e of readdirSync(p).sort()) walk(join(p, e));
  else if (st.isFile()) hashFile(p);
}

for (const p of process.argv.slice(2)) walk(p);
process.stdout.write(`${total}\n`);
