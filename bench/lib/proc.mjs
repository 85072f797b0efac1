// Running commands and timing them: wall time from the driver's clock, peak RSS and CPU time from
// /usr/bin/time (getrusage of the child and what it waited for; Node cannot report it for a child
// process), and the CPU time of a server process (registry, dockerd) from /proc.
import { spawn, spawnSync } from 'node:child_process';
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
  const full = rssFile ? ['/usr/bin/time', '-f', '%M %U %S', '-o', rssFile, ...argv] : argv;
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
          const [kb, user, sys] = readFileSync(rssFile, 'utf8')
            .trim()
            .split('\n')
            .pop()
            .split(' ')
            .map(Number);
          res.rssMB = Number.isFinite(kb) ? kb / 1024 : undefined;
          res.cpuS = Number.isFinite(user + sys) ? user + sys : undefined;
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

/** CPU seconds (user + system) a running process and its waited-for children have used so far. */
export function processCpuS(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    // utime, stime, cutime, cstime: fields 14–17 of stat(5), counted after "pid (comm) "
    return fields.slice(11, 15).reduce((n, x) => n + Number(x), 0) / 100;
  } catch {
    return undefined;
  }
}

/**
 * Runs step() and adds the CPU time the server process `pid` spent meanwhile (serverCpuS): on a
 * 2-core machine the registry or engine competes with the command it serves.
 */
export async function withServerCpu(pid, step) {
  const before = pid ? processCpuS(pid) : undefined;
  const r = await step();
  const after = pid ? processCpuS(pid) : undefined;
  return before === undefined || after === undefined ? r : { ...r, serverCpuS: after - before };
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

/** Writes back every dirty page (untimed), so that no run pays for the previous one's writes. */
export function settle() {
  spawnSync('sync', { stdio: 'ignore' });
}

/**
 * Measure a step a few times; median of the wall times, max of the peak RSS.
 * step(i) resolves {wall, rssMB?, info?}; prepare(i) and warm() run untimed before each repetition.
 * A step slower than slowS on its first repetition is measured once (keeps bench/run short).
 */
export async function measure(rec, { reps, slowS, prepare, step, warm }) {
  rec.times = [];
  rec.info = [];
  try {
    for (let i = 0; i < reps; i++) {
      if (prepare) await prepare(i);
      // The store files back in the page cache (untimed): other rows' gigabytes written (archives,
      // loads, blobs) evict some of them, and a run that reads them from disk pays for its
      // predecessors; its back-to-back baseline, run after it, would then find them cached.
      if (warm) await warm();
      // Dirty pages left by the previous run (blobs written, a 1 GB archive loaded into the engine)
      // are written back first: otherwise the next run's fsyncs wait for them (an inner-loop load
      // right after a `docker load` of the 1 GB archive took 3 s instead of 0.15 s).
      settle();
      const r = await step(i);
      rec.times.push(r.wall);
      if (r.rssMB !== undefined) rec.rssMB = Math.max(rec.rssMB ?? 0, r.rssMB);
      if (r.cpuS !== undefined) (rec.cpuS ??= []).push(r.cpuS);
      if (r.serverCpuS !== undefined) (rec.serverCpuS ??= []).push(r.serverCpuS);
      // paired: the baseline(s) run right after (or before) this repetition, back to back
      for (const p of r.paired ? [r.paired].flat() : [])
        ((rec.pairs ??= {})[p.id] ??= { id: p.id, ratios: [] }).ratios.push(r.wall / p.wall);
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
  if (rec.cpuS) rec.cpuS = median(rec.cpuS);
  if (rec.serverCpuS) rec.serverCpuS = median(rec.serverCpuS);
  for (const p of Object.values(rec.pairs ?? {})) p.median = median(p.ratios);
  if (rec.median !== undefined && !rec.error) {
    process.stderr.write(
      `[bench]   ${rec.label}: ${rec.median.toFixed(3)} s (${rec.times.map((t) => t.toFixed(2)).join(', ')})` +
        (rec.rssMB ? `, ${rec.rssMB.toFixed(0)} MB RSS` : '') +
        (rec.cpuS !== undefined ? `, CPU ${rec.cpuS.toFixed(2)} s` : '') +
        (rec.serverCpuS !== undefined ? ` + server ${rec.serverCpuS.toFixed(2)} s` : '') +
        '\n',
    );
  }
  return rec;
}
