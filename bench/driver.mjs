// bench/run's driver: builds the bench closures with Nix, measures nixoci against the physical
// baselines in the same run, and writes one table, bench/results/<time>.json and latest.svg.
// Configuration (environment): BENCH_SIZE_MB (1000), BENCH_REPS (3), BENCH_SLOW_S (8),
// BENCH_SKIP (comma list of: baselines, build, push, load, churn), BENCH_PROFILE=1 or --profile.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { measure, run, settle, sh, withServerCpu } from './lib/proc.mjs';
import { fileBytes, readGraph } from './lib/store.mjs';
import { summariseProfile } from './lib/profile.mjs';
import { report } from './lib/report.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cfg = {
  sizeMB: Number(process.env.BENCH_SIZE_MB ?? 1000),
  reps: Math.max(1, Number(process.env.BENCH_REPS ?? 3)),
  slowS: Number(process.env.BENCH_SLOW_S ?? 8),
  skip: new Set((process.env.BENCH_SKIP ?? '').split(',').filter(Boolean)),
  profile: process.argv.includes('--profile') || process.env.BENCH_PROFILE === '1',
};
const started = Date.now();
const loadBefore = loadavg()[0];
const runId = new Date().toISOString().replace(/[:.]/g, '-');
const runTag = runId.toLowerCase().replace(/-\d+z$/, '');
const STATE = join(ROOT, 'bench/.state');
const WORK = join(STATE, `work-${runId}`);
const RESULTS = join(ROOT, 'bench/results');
mkdirSync(join(STATE, 'gc'), { recursive: true });
mkdirSync(WORK, { recursive: true });
mkdirSync(RESULTS, { recursive: true });
process.on('exit', () => rmSync(WORK, { recursive: true, force: true }));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

const services = JSON.parse(readFileSync(join(ROOT, '.state/env.json'), 'utf8'));
const REGISTRY = services.NIXOCI_TEST_REGISTRY;
const DOCKER_HOST = services.NIXOCI_TEST_DOCKER_HOST;
const DOCKER = services.NIXOCI_TEST_DOCKER_CLI ?? '/usr/bin/docker';
const NIXOCI_ENV = { XDG_CACHE_HOME: join(WORK, 'xdg-cache') };
/** The plain registry's and dockerd's pids, for the CPU they spend serving a push or a load. */
const servicePid = (name) => {
  try {
    return Number(readFileSync(join(ROOT, `.state/${name}.pid`), 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
};
const REGISTRY_PID = servicePid('registry-plain');
const DOCKERD_PID = servicePid('dockerd');

const log = (s) => process.stderr.write(`[bench] ${s}\n`);
const gb = (n) => `${(n / 1e9).toFixed(2)} GB`;
const kb = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`);
let dirSeq = 0;
const freshDir = (name) => {
  const d = join(WORK, `${name}-${dirSeq++}`);
  mkdirSync(d, { recursive: true });
  return d;
};

// BENCH_NIXOCI: another nixoci checkout (with dist/ built) to measure, e.g. a clean export of HEAD
const NIXOCI_ROOT = resolve(process.env.BENCH_NIXOCI ?? ROOT);
// bin/nixoci.js run as users run it: through its #! line (a shell part, then Node)
const nixociArgv = (args) => [join(NIXOCI_ROOT, 'bin/nixoci.js'), ...args];
async function nixoci(args, { json = true } = {}) {
  const r = await run(nixociArgv(json ? [...args, '--json'] : args), { rss: true, env: NIXOCI_ENV });
  if (r.code !== 0) {
    const err = new Error(
      `nixoci ${args[0]}: exit ${r.code}: ${r.stderr.trim().split('\n').slice(-4).join(' | ')}`,
    );
    err.code = r.code;
    throw err;
  }
  return { ...r, json: json ? JSON.parse(r.stdout) : undefined };
}
const has = async (cmd) => (await run(nixociArgv([cmd, '--help']))).code === 0;

// --- results ---------------------------------------------------------------------------------
const M = new Map();
const rec = (id, section, label, kind = 'nixoci') => {
  const r = { id, section, label, kind };
  M.set(id, r);
  return r;
};
const layerSummary = (j) => {
  const ls = j.layers ?? [];
  const by = (a) => ls.filter((l) => l.action === a).length;
  return {
    bytesRead: j.bytesRead,
    layers: ls.length,
    size: ls.reduce((s, l) => s + (l.size ?? 0), 0),
    bytesSent: ls.reduce((s, l) => s + (l.bytesSent ?? 0), 0),
    actions: Object.fromEntries([...new Set(ls.map((l) => l.action))].map((a) => [a, by(a)])),
  };
};

// --- 1. closures ---------------------------------------------------------------------------
const nixBuild = (args, opts = {}) =>
  run(['nix-build', '--max-jobs', '2', ...args], { check: true, ...opts });
const closureNix = join(ROOT, 'bench/closure.nix');
const churnNix = join(ROOT, 'bench/churn.nix');

log(`nix-build: bench closure (${cfg.sizeMB} MiB) and the churn closure (cached after the first run)`);
const nixRec = rec('nix-build', 'setup', 'nix-build bench + churn closures', 'info');
const nixStart = Date.now();
const G0 = (
  await nixBuild([
    '-o',
    join(STATE, `gc/main-${cfg.sizeMB}`),
    closureNix,
    '--arg',
    'sizeMB',
    String(cfg.sizeMB),
    '-A',
    'graph',
  ])
).stdout.trim();
const churnA = (
  await nixBuild(['-o', join(STATE, 'gc/churn-a'), churnNix, '--argstr', 'tag', 'a', '-A', 'graph'])
).stdout.trim();
const churnB = (
  await nixBuild(['-o', join(STATE, 'gc/churn-b'), churnNix, '--argstr', 'tag', 'b', '-A', 'graph'])
).stdout.trim();
// app variants: counter 1..K, each changes only bench-app (and the graph)
const R = cfg.reps;
const K = 6 * R;
const variantExpr = `map (c: (import ${closureNix} { sizeMB = ${cfg.sizeMB}; counter = c; }).graph) [ ${Array.from(
  { length: K },
  (_, i) => i + 1,
).join(' ')} ]`;
const variantGraphs = (await nixBuild(['--no-out-link', '-E', variantExpr])).stdout.trim().split('\n');
nixRec.times = [(Date.now() - nixStart) / 1000];
nixRec.median = nixRec.times[0];
log(`nix-build done in ${nixRec.median.toFixed(1)} s`);

const variant = (() => {
  let next = 0;
  return () => {
    const graph = variantGraphs[next++];
    const app = readGraph(graph).roots[0];
    return { graph, app, appBytes: fileBytes(app).bytes };
  };
})();

const g0 = readGraph(G0);
const paths = g0.closure.map((e) => e.path).sort();
const app0 = g0.roots[0];
let files = 0;
let bytes = 0;
for (const p of paths) {
  const f = fileBytes(p);
  files += f.files;
  bytes += f.bytes;
}
const closure = {
  graph: G0,
  paths: paths.length,
  files,
  fileBytes: bytes,
  narBytes: g0.closure.reduce((s, e) => s + e.narSize, 0),
  app: app0,
  appBytes: fileBytes(app0).bytes,
};
log(`closure: ${closure.paths} store paths, ${closure.files} files, ${gb(closure.fileBytes)} in files`);
const TAR = `tar -cf - -C / ${paths.map((p) => p.slice(1)).join(' ')}`;

// --- 2. warm the page cache (every store file once, and Node's own modules) --------------------
log('warming the page cache');
/** Reads every store file of the closure (untimed), so that each timed run finds them cached. */
const warm = () => sh(`${TAR} | cat > /dev/null`, { check: true });
await warm();
await run([process.execPath, join(ROOT, 'bench/lib/hash-walk.mjs'), ...paths], { check: true });
await run(nixociArgv(['--help']));

// --- 3. baselines ------------------------------------------------------------------------------
const BASELINE = {
  'tar-openssl': `${TAR} | openssl dgst -sha256 > /dev/null`,
  'tar-sha256sum': `${TAR} | sha256sum > /dev/null`,
  'tar-zstd': `${TAR} | zstd -q -T0 -3 -c > /dev/null`,
};
/**
 * Runs a goal's baseline right after the nixoci run it is compared with: on a shared machine the
 * load changes within a minute, and a ratio of two runs made back to back is steadier than a ratio
 * of medians taken minutes apart (both are reported).
 */
const paired = async (baselineId, r) => {
  const b = await sh(BASELINE[baselineId], { check: true });
  return { ...r, paired: { id: baselineId, wall: b.wall } };
};
const opts = { reps: R, slowS: cfg.slowS, warm };
if (!cfg.skip.has('baselines')) {
  log('baselines');
  const base = [
    ['tar-openssl', 'tar | openssl dgst -sha256', BASELINE['tar-openssl']],
    ['tar-sha256sum', 'tar | sha256sum', BASELINE['tar-sha256sum']],
    ['tar-zstd', 'tar | zstd -T0 -3', BASELINE['tar-zstd']],
    ['tar-pigz1', 'tar | pigz -1', `${TAR} | pigz -1 -c > /dev/null`],
    ['tar-pigz6', 'tar | pigz -6', `${TAR} | pigz -6 -c > /dev/null`],
  ];
  for (const [id, label, script] of base)
    await measure(rec(id, 'baselines', label, 'baseline'), {
      ...opts,
      step: () => sh(script, { check: true, rss: true }),
    });
  await measure(rec('node-hash', 'baselines', 'Node loop: read + sha256 every file', 'baseline'), {
    ...opts,
    step: () => run([process.execPath, join(ROOT, 'bench/lib/hash-walk.mjs'), ...paths], { check: true }),
  });
}

// --- 4. build --to oci: cold, then warm -------------------------------------------------------
const warmCache = freshDir('cache-none');
if (!cfg.skip.has('build')) {
  log('nixoci build --to oci: (cold: --no-cache, fresh dir)');
  for (const comp of ['none', 'zstd', 'gzip']) {
    const out = join(WORK, `oci-cold-${comp}`);
    await measure(rec(`build-${comp}`, 'build --to oci:', `build, cold, --compression ${comp}`), {
      ...opts,
      prepare: () => rmSync(out, { recursive: true, force: true }),
      step: async () => {
        const r = await nixoci([
          'build',
          '--graph',
          G0,
          '--to',
          `oci:${out}`,
          '--no-cache',
          '--compression',
          comp,
        ]);
        const res = { ...r, info: layerSummary(r.json) };
        return comp === 'gzip' ? res : paired(comp === 'zstd' ? 'tar-zstd' : 'tar-sha256sum', res);
      },
    });
    rmSync(out, { recursive: true, force: true });
  }
}
log('nixoci build --to oci: (warm cache)');
const warmOut = join(WORK, 'oci-warm');
await nixoci(['build', '--graph', G0, '--to', `oci:${warmOut}`, '--cache-dir', warmCache]).catch((e) =>
  log(`warm seed failed: ${e.message}`),
);
if (!cfg.skip.has('build')) {
  await measure(rec('build-unchanged', 'build --to oci:', 'build, warm, nothing changed'), {
    ...opts,
    step: async () => {
      const r = await nixoci(['build', '--graph', G0, '--to', `oci:${warmOut}`, '--cache-dir', warmCache]);
      return { ...r, info: layerSummary(r.json) };
    },
  });
  let v;
  await measure(rec('build-warm', 'build --to oci:', 'build, warm, app path changed'), {
    ...opts,
    prepare: () => (v = variant()),
    step: async () => {
      const r = await nixoci([
        'build',
        '--graph',
        v.graph,
        '--to',
        `oci:${warmOut}`,
        '--cache-dir',
        warmCache,
      ]);
      return { ...r, info: { ...layerSummary(r.json), appBytes: v.appBytes } };
    },
  });
} else for (let i = 0; i < R; i++) variant();
rmSync(warmOut, { recursive: true, force: true });

// --- 5. docker-archives for the skopeo / docker load baselines --------------------------------
const hasPush = !cfg.skip.has('push') && (await has('push'));
const hasLoad = !cfg.skip.has('load') && (await has('load'));
const archives = [];
let archive0;
if (hasPush || hasLoad) {
  log('docker-archives (one layer per path) for the skopeo copy / docker load baselines');
  archive0 = join(WORK, 'archive-0.tar');
  await measure(rec('build-archive', 'build --to oci:', 'build --to docker-archive:, warm cache', 'nixoci'), {
    reps: 1,
    slowS: 0,
    step: () =>
      nixoci([
        'build',
        '--graph',
        G0,
        '--to',
        `docker-archive:${archive0}:nixoci-bench/dl:v0`,
        '--cache-dir',
        warmCache,
      ]),
  });
  for (let i = 0; i < R; i++) {
    const v = variant();
    const file = join(WORK, `archive-a${i}.tar`);
    try {
      await nixoci([
        'build',
        '--graph',
        v.graph,
        '--to',
        `docker-archive:${file}:nixoci-bench/dl:a${i}`,
        '--cache-dir',
        warmCache,
      ]);
      archives.push(file);
    } catch (e) {
      log(`docker-archive for the inner-loop baselines failed: ${e.message}`);
    }
  }
}

// --- 6. push ---------------------------------------------------------------------------------
if (!hasPush) {
  log(cfg.skip.has('push') ? 'push: skipped' : 'push: `nixoci push --help` fails, not measured');
  for (let i = 0; i < 2 * R; i++) variant();
} else {
  log('push to the loopback registry');
  let refPrefix = '';
  const ref = (name) => `${refPrefix}${REGISTRY}/nixoci-bench/${runTag}-${name}:latest`;
  const push = async (graph, name, args) => {
    try {
      return await nixoci(['push', '--graph', graph, ...args, ref(name)]);
    } catch (e) {
      if (e.code !== 2 || refPrefix) throw e;
      refPrefix = 'docker://';
      return nixoci(['push', '--graph', graph, ...args, ref(name)]);
    }
  };
  const seed = {};
  for (const comp of ['zstd', 'none']) {
    await measure(rec(`push-cold-${comp}`, 'push', `push, cold (empty cache, new repo), ${comp}`), {
      ...opts,
      prepare: (i) => {
        seed[comp] = { repo: `cold-${comp}-${i}`, cache: freshDir('cache-push') };
      },
      step: async () => {
        const r = await withServerCpu(REGISTRY_PID, () =>
          push(G0, seed[comp].repo, ['--compression', comp, '--cache-dir', seed[comp].cache]),
        );
        return paired(comp === 'zstd' ? 'tar-zstd' : 'tar-sha256sum', { ...r, info: layerSummary(r.json) });
      },
    });
  }
  const inner = async (id, label, cacheDir) => {
    let v;
    await measure(rec(id, 'push', label), {
      ...opts,
      prepare: () => (v = variant()),
      step: async () => {
        const r = await push(v.graph, seed.zstd.repo, ['--compression', 'zstd', '--cache-dir', cacheDir()]);
        return { ...r, info: { ...layerSummary(r.json), appBytes: v.appBytes } };
      },
    });
    return v;
  };
  await inner('push-inner', 'push, inner loop (app changed, warm cache)', () => seed.zstd.cache);
  const last = await inner('push-stateless', 'push, stateless inner loop (empty cache)', () =>
    freshDir('cache-empty'),
  );
  await push(last.graph, seed.zstd.repo, ['--compression', 'zstd', '--cache-dir', seed.zstd.cache]).catch(
    () => {},
  );
  await measure(rec('push-unchanged', 'push', 'push, unchanged re-push (warm cache)'), {
    ...opts,
    step: async () => {
      const r = await push(last.graph, seed.zstd.repo, [
        '--compression',
        'zstd',
        '--cache-dir',
        seed.zstd.cache,
      ]);
      return { ...r, info: layerSummary(r.json) };
    },
  });

  // skopeo copy of the equivalent one-layer-per-path docker-archive
  const skopeo = (file, name) =>
    run(
      [
        'skopeo',
        'copy',
        '--quiet',
        '--dest-tls-verify=false',
        `docker-archive:${file}`,
        `docker://${REGISTRY}/nixoci-bench/${runTag}-${name}:latest`,
      ],
      { check: true },
    );
  let skopeoRepo;
  await measure(rec('skopeo-cold', 'push', 'skopeo copy docker-archive: → registry, cold', 'baseline'), {
    ...opts,
    // skopeo's blob-info-cache would let it mount blobs pushed by an earlier bench run
    prepare: (i) => {
      rmSync('/var/lib/containers/cache/blob-info-cache-v1.boltdb', { force: true });
      skopeoRepo = `skopeo-${i}`;
    },
    step: () => skopeo(archive0, skopeoRepo),
  });
  await measure(rec('skopeo-inner', 'push', 'skopeo copy, inner loop (app changed)', 'baseline'), {
    ...opts,
    step: (i) => skopeo(archives[i], skopeoRepo),
  });
  // the same on a stateless runner: no blob-info-cache, so skopeo recompresses every layer to
  // learn its digest before it can skip it
  await measure(
    rec('skopeo-inner-nobic', 'push', 'skopeo copy, inner loop, empty blob-info-cache', 'baseline'),
    {
      ...opts,
      prepare: () => rmSync('/var/lib/containers/cache/blob-info-cache-v1.boltdb', { force: true }),
      step: (i) => skopeo(archives[i], skopeoRepo),
    },
  );
}

// --- 7. load ---------------------------------------------------------------------------------
if (!hasLoad) {
  log(cfg.skip.has('load') ? 'load: skipped' : 'load: `nixoci load --help` fails, not measured');
} else {
  log('load into the Docker engine');
  const docker = (args, o) => run([DOCKER, '-H', DOCKER_HOST, ...args], o);
  const ours = new Set();
  const cleanup = async () => {
    const r = await docker(['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}'], { check: true });
    for (const line of r.stdout.split('\n'))
      if (line.startsWith('nixoci-bench/')) ours.add(line.split(' ')[1]);
    if (ours.size) await docker(['rmi', '-f', ...ours]);
    ours.clear();
  };
  const remember = async (ref) => {
    const r = await docker(['image', 'inspect', '--format', '{{.Id}}', ref]);
    if (r.code === 0) ours.add(r.stdout.trim());
  };
  const dockerLoad = async (file) => {
    const r = await docker(['load', '-q', '-i', file], { check: true, rss: true });
    return r;
  };
  await measure(rec('docker-load-cold', 'load', 'docker load -i docker-archive, cold', 'baseline'), {
    ...opts,
    prepare: cleanup,
    step: () => withServerCpu(DOCKERD_PID, () => dockerLoad(archive0)),
  });
  await measure(rec('docker-load-inner', 'load', 'docker load -i, inner loop (app changed)', 'baseline'), {
    ...opts,
    step: (i) => dockerLoad(archives[i]),
  });
  // #4's baseline: a one-layer-per-path docker-archive piped into `docker load`, the way
  // dockerTools.streamLayeredImage is used; the archive is written by nixoci (warm digest cache),
  // the fastest such producer at hand.
  const q = (x) => `'${x.replaceAll("'", `'\\''`)}'`;
  const dockerPipe = (graph, tag) =>
    sh(
      `${nixociArgv(['build', '--graph', graph, '--to', `docker-archive:-:nixoci-bench/pipe:${tag}`, '-q'])
        .map(q)
        .join(' ')} | ${[DOCKER, '-H', DOCKER_HOST, 'load', '-q'].map(q).join(' ')} > /dev/null`,
      { check: true, env: NIXOCI_ENV },
    );
  await measure(rec('docker-pipe-cold', 'load', 'archive | docker load, cold', 'baseline'), {
    ...opts,
    prepare: cleanup,
    step: () => dockerPipe(G0, 'v0'),
  });
  let pv;
  await measure(
    rec('docker-pipe-inner', 'load', 'archive | docker load, inner loop (app changed)', 'baseline'),
    {
      ...opts,
      prepare: () => (pv = variant()),
      step: (i) => dockerPipe(pv.graph, `v${i + 1}`),
    },
  );
  const name = 'nixoci-bench/load:latest';
  const load = async (graph) => {
    const r = await nixoci(['load', '--graph', graph, '--host', DOCKER_HOST, name]);
    await remember(name);
    return { ...r, info: layerSummary(r.json) };
  };
  // Back to back, like the cold build and push: each cold load comes right after a cold pipe
  // into `docker load` and a cold `docker load -i` (the engine emptied and synced in between,
  // untimed), three rounds whatever their length: a load takes ~10 s, and the machine's load drifts
  // over that much. Ours goes last, so that the engine holds its image for the inner loop below.
  await measure(rec('load-cold', 'load', 'load, cold (engine has none of the layers)'), {
    ...opts,
    slowS: Infinity,
    prepare: cleanup,
    step: async () => {
      // what measure() does before each repetition, between the three runs of this one
      const afresh = async () => {
        await cleanup();
        await warm();
        settle();
      };
      const p = await dockerPipe(G0, 'v0');
      await afresh();
      const b = await dockerLoad(archive0);
      await afresh();
      const r = await withServerCpu(DOCKERD_PID, () => load(G0));
      return {
        ...r,
        paired: [
          { id: 'docker-pipe-cold', wall: p.wall },
          { id: 'docker-load-cold', wall: b.wall },
        ],
      };
    },
  });
  let v;
  await measure(rec('load-inner', 'load', 'load, inner loop (app changed)'), {
    ...opts,
    prepare: () => (v = variant()),
    step: async () => {
      const r = await load(v.graph);
      return { ...r, info: { ...r.info, appBytes: v.appBytes } };
    },
  });
  await cleanup();
}

// --- 8. layer churn --------------------------------------------------------------------------
let churn;
if (!cfg.skip.has('churn')) {
  log('layer churn: ~300 paths, --max-layers 100, one small leaf path changed');
  const build = async (src, id, label) => {
    const out = freshDir('oci-churn');
    const r = await measure(rec(id, 'layer churn', label), {
      reps: 1,
      slowS: 0,
      step: async () => {
        const x = await nixoci(['build', ...src, '--max-layers', '100', '--to', `oci:${out}`, '--no-cache']);
        return { ...x, info: { ...layerSummary(x.json), layerList: x.json.layers } };
      },
    });
    rmSync(out, { recursive: true, force: true });
    return r.info[0];
  };
  const leafB = readGraph(churnB).roots.at(-1);
  const a = await build(['--graph', churnA], 'churn-a', 'build ~300-path closure (tag a), cold');
  const b = await build(['--graph', churnB], 'churn-b', 'build, leaf path changed (tag b), cold');
  const leaf = await build(['--path', leafB], 'churn-leaf', 'build the changed leaf path alone');
  if (a && b && leaf) {
    const old = new Set(a.layerList.map((l) => l.digest));
    const fresh = b.layerList.filter((l) => !old.has(l.digest));
    const leafLayer = leaf.layerList.find((l) => l.storePaths.includes(leafB));
    const g = readGraph(churnB);
    churn = {
      paths: g.closure.length,
      layers: b.layerList.length,
      changedPath: leafB,
      changedPathLayerSize: leafLayer.size,
      newLayers: fresh.length,
      newLayerBytes: fresh.reduce((s, l) => s + l.size, 0),
      newLayerPaths: fresh.map((l) => l.storePaths.length),
    };
    churn.ratio = churn.newLayerBytes / churn.changedPathLayerSize;
    log(
      `churn: ${churn.newLayers} new layer(s), ${kb(churn.newLayerBytes)} vs the path's own layer ${kb(churn.changedPathLayerSize)} → ${churn.ratio.toFixed(2)}×`,
    );
  }
}

// --- 9. profile ------------------------------------------------------------------------------
let profile;
if (cfg.profile) {
  log('profiling: node --cpu-prof, cold build --compression none');
  const dir = join(RESULTS, `profile-${runId}`);
  const out = join(WORK, 'oci-prof');
  const r = await run(
    [
      process.execPath,
      '--cpu-prof',
      '--cpu-prof-dir',
      dir,
      join(NIXOCI_ROOT, 'bin/nixoci.js'),
      'build',
      '--graph',
      G0,
      '--to',
      `oci:${out}`,
      '--no-cache',
      '--compression',
      'none',
    ],
    { env: NIXOCI_ENV },
  );
  rmSync(out, { recursive: true, force: true });
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')) : [];
  if (r.code === 0 && files.length) {
    profile = { file: join(dir, files[0]), wall: r.wall, ...summariseProfile(join(dir, files[0])) };
  } else log(`profiling failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
}

// --- 10. report ------------------------------------------------------------------------------
const machine = {
  cpu: cpus()[0]?.model,
  cores: cpus().length,
  node: process.version,
  nix: (await run(['nix', '--version'])).stdout.trim(),
  root: ROOT,
  nixoci: NIXOCI_ROOT,
  commit: (await run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'])).stdout.trim(),
  dirty: (await run(['git', '-C', ROOT, 'status', '--porcelain', '--', 'src'])).stdout.trim() !== '',
  // 1-minute load average before and after: other work on this machine makes the figures noisy
  load: [loadBefore, loadavg()[0]].map((x) => Number(x.toFixed(2))),
};
report({
  M,
  cfg,
  closure,
  churn,
  profile,
  machine,
  runId,
  resultsDir: RESULTS,
  totalSeconds: (Date.now() - started) / 1000,
  available: { push: hasPush, load: hasLoad },
});
