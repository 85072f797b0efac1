// The "plain Node loop" yardstick of DESIGN.md: read every regular file of the given store
// paths and sha256 it (one hash per file, 1 MiB reads), no tar, no writes.
import { createHash } from 'node:crypto';
import { lstat, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';

const buf = Buffer.allocUnsafe(1 << 20);
let total = 0;

async function hashFile(p) {
  const fh = await open(p, 'r');
  const h = createHash('sha256');
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      total += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

async function walk(p) {
  const st = await lstat(p);
  if (st.isDirectory()) for (const e of (await readdir(p)).sort()) await walk(join(p, e));
  else if (st.isFile()) await hashFile(p);
}

for (const p of process.argv.slice(2)) await walk(p);
process.stdout.write(`${total}\n`);
