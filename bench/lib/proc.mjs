// Running commands and timing them: wall time from the driver's clock, peak RSS from
// /usr/bin/time (getrusage of the child; Node cannot report it for a child process).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const timeDir = mkdtempSync(join(tmpdir(), 'nixoci-bench-time-'));
let timeSeq = 0;
process.on('exit', () => rmSync(timeDir, { recursive: true, force: true }));

/**
 * Run argv; resolve {code, stdout, stderr, wall (s), rssMB (when opts.rss)}.
 * opts: env (merged into process.env), cwd, rss (wrap in /usr/bin/time), check (reject on exit ≠ 0).
 */
export function run(argv, opts = {}) {
  const rssFile = opts.rss ? join(timeDir, `rss-${timeSeq++}`) : undefined;
  const full = rssFile ? ['/usr/bin/time', '-f', '%M', '-o', rssFile, ...argv] : argv;
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(full[0], full.slice(1), {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = [];
    const err = [];
    child.stdout.on('data', (b) => out.push(b));
    child.stderr.on('data', (b) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const wall = Number(process.hrtime.bigint() - started) / 1e9;
      const res = {
        code: code ?? 128,
        signal,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        wall,
      };
      if (rssFile) {
        try {
          const kb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
          res.rssMB = Number.isFinite(kb) ? kb / 1024 : undefined;
        } catch {
          res.rssMB = undefined;
        }
      }
      if (opts.check && res.code !== 0) {
        const tail = res.stderr.trim().split('\n').slice(-8).join('\n');
        reject(new Error(`${argv.join(' ').slice(0, 300)}: exit ${res.code}\n${tail}`));
      } else resolve(res);
    });
  });
}

/** A bash pipeline (with pipefail). */
export function sh(script, opts = {}) {
  return run(['bash', '-o', 'pipefail', '-c', script], opts);
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return undefined;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Measure a step a few times; median of the wall times, max of the peak RSS.
 * step(i) resolves {wall, rssMB?, info?}; prepare(i) runs untimed before each repetition.
 * A step slower than slowS on its first repetition is measured once (keeps bench/run short).
 */
export async function measure(rec, { reps, slowS, prepare, step }) {
  rec.times = [];
  rec.info = [];
  try {
    for (let i = 0; i < reps; i++) {
      if (prepare) await prepare(i);
      const r = await step(i);
      rec.times.push(r.wall);
      if (r.rssMB !== undefined) rec.rssMB = Math.max(rec.rssMB ?? 0, r.rssMB);
      if (r.info) rec.info.push(r.info);
      if (i === 0 && r.wall > slowS) break;
    }
  } catch (e) {
    rec.error = String(e.message ?? e)
      .split('\n')
      .slice(0, 6)
      .join(' | ');
    process.stderr.write(`[bench]   ${rec.label}: ERROR ${rec.error}\n`);
  }
  rec.median = median(rec.times);
  if (rec.median !== undefined && !rec.error) {
    process.stderr.write(
      `[bench]   ${rec.label}: ${rec.median.toFixed(3)} s (${rec.times.map((t) => t.toFixed(2)).join(', ')})` +
        (rec.rssMB ? `, ${rec.rssMB.toFixed(0)} MB RSS` : '') +
        '\n',
    );
  }
  return rec;
}
