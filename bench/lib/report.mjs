// The goals of issues #2, #3, #4 and #6 (and DESIGN.md's yardstick) checked against the
// measurements; one table on stdout, the same data as JSON, and a bar chart as SVG.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { barChartSvg } from './svg.mjs';

const size = (n) =>
  n === undefined
    ? '?'
    : n >= 1e9
      ? `${(n / 1e9).toFixed(2)} GB`
      : n >= 1e6
        ? `${(n / 1e6).toFixed(1)} MB`
        : `${(n / 1e3).toFixed(1)} kB`;
const secs = (s) => (s === undefined ? '' : s < 1 ? `${s.toFixed(3)} s` : `${s.toFixed(2)} s`);

function checks({ M, churn, totalSeconds, cores }) {
  const med = (id) => (M.get(id)?.error ? undefined : M.get(id)?.median);
  const infos = (id) => M.get(id)?.info ?? [];
  const out = [];
  const add = (id, label, value, goal, pass, issue) => out.push({ id, label, value, goal, pass, issue });
  // With runs of the baseline made right after each of ours (see `paired` in driver.mjs), the goal
  // is checked on the median of those back-to-back ratios; the ratio of the medians is shown too.
  const ratio = (id, base, max, label, issue) => {
    const a = med(id);
    const b = med(base);
    const pairs = M.get(id)?.error ? undefined : M.get(id)?.pairs?.[base];
    if (pairs) {
      const r = pairs.median;
      const shown = `${r.toFixed(2)}× (${pairs.ratios.map((x) => x.toFixed(2)).join(' ')})`;
      add(id, `${label}, back to back`, shown, max ? `≤ ${max}×` : 'info', max ? r <= max : null, issue);
      if (a !== undefined && b !== undefined)
        add(id, `${label}, medians`, `${(a / b).toFixed(2)}×`, 'info', null, '');
      return;
    }
    if (a === undefined || b === undefined)
      return add(id, label, 'n/a', max ? `≤ ${max}×` : 'info', null, issue);
    const r = a / b;
    add(id, label, `${r.toFixed(2)}×`, max ? `≤ ${max}×` : 'info', max ? r <= max : null, issue);
  };
  const speedup = (id, base, min, label, issue) => {
    const a = med(id);
    const b = med(base);
    const goal = issue === 'info' ? 'info' : `≥ ${min}×`;
    if (a === undefined || b === undefined) return add(id, label, 'n/a', goal, null, issue);
    add(
      id,
      label,
      `${(b / a).toFixed(1)}×`,
      goal,
      issue === 'info' ? null : b / a >= min,
      issue === 'info' ? '' : issue,
    );
  };
  // the whole workflow of the baseline (write the archive, then copy/load it) against ours: info
  const composite = (id, parts, label) => {
    const a = med(id);
    const b = parts.map(med);
    if (a === undefined || b.includes(undefined)) return add(id, label, 'n/a', 'info', null, '');
    add(id, label, `${(b.reduce((x, y) => x + y, 0) / a).toFixed(1)}× faster`, 'info', null, '');
  };
  // What the CPU time allows on this machine's cores: (our CPU + the server's) / cores, as a ratio
  // to the baseline's wall time. A goal below this floor needs less work, not better overlap.
  const cpuOf = (id) => {
    const r = M.get(id);
    return r?.cpuS === undefined ? undefined : r.cpuS + (r.serverCpuS ?? 0);
  };
  const floor = (id, base) => {
    const c = cpuOf(id);
    const b = med(base);
    if (c === undefined || b === undefined)
      return add(id, 'CPU / cores vs baseline', 'n/a', 'info', null, '');
    const r = M.get(id);
    const parts = `${r.cpuS.toFixed(1)}${r.serverCpuS !== undefined ? ` + server ${r.serverCpuS.toFixed(1)}` : ''} s`;
    const bc = cpuOf(base);
    add(
      id,
      `CPU ${parts} / ${cores} cores`,
      `${(c / cores / b).toFixed(2)}× (baseline CPU ${bc === undefined ? '?' : bc.toFixed(1)} s)`,
      'info',
      null,
      '',
    );
  };
  const abs = (id, max, issue) => {
    const a = med(id);
    add(
      id,
      'wall time',
      a === undefined ? 'n/a' : secs(a),
      `≤ ${max} s`,
      a === undefined ? null : a <= max,
      issue,
    );
  };
  const rss = (id, max, issue) => {
    const r = M.get(id)?.rssMB;
    add(
      id,
      'peak RSS',
      r === undefined ? 'n/a' : `${r.toFixed(0)} MB`,
      `≤ ${max} MB`,
      r === undefined ? null : r <= max,
      issue,
    );
  };
  const each = (id, label, goal, pred, show, issue) => {
    const xs = infos(id);
    if (!xs.length || M.get(id)?.error) return add(id, label, 'n/a', goal, null, issue);
    add(id, label, show(xs), goal, xs.every(pred), issue);
  };
  const readsApp = (id, issue) =>
    each(
      id,
      'store bytes read',
      '= app path',
      (x) => x.bytesRead === x.appBytes,
      (xs) => xs.map((x) => `${x.bytesRead}/${x.appBytes}`).join(' '),
      issue,
    );

  ratio('build-none', 'tar-sha256sum', 1.3, 'vs tar | sha256sum', '#2');
  ratio('build-none', 'tar-openssl', 1.3, 'vs tar | openssl', 'DESIGN');
  rss('build-none', 200, '#2');
  ratio('build-zstd', 'tar-zstd', 1.3, 'vs tar | zstd -T0 -3', '#2');
  floor('build-zstd', 'tar-zstd');
  rss('build-zstd', 200, '#2');
  ratio('build-gzip', 'tar-pigz1', null, 'vs tar | pigz -1', '');
  ratio('build-gzip', 'tar-pigz6', null, 'vs tar | pigz -6', '');
  rss('build-gzip', 200, '#2');
  each(
    'build-unchanged',
    'store bytes read',
    '= 0',
    (x) => x.bytesRead === 0,
    (xs) => xs.map((x) => x.bytesRead).join(' '),
    '#2',
  );
  readsApp('build-warm', '#2');
  ratio('push-cold-zstd', 'tar-zstd', 1.3, 'vs tar | zstd -T0 -3', '#3 #6');
  floor('push-cold-zstd', 'tar-zstd');
  ratio('push-cold-none', 'tar-sha256sum', 1.5, 'vs tar | sha256sum', '#3');
  ratio('push-cold-none', 'tar-openssl', 1.5, 'vs tar | openssl', 'DESIGN');
  rss('push-cold-zstd', 200, '#6');
  rss('push-cold-none', 200, '#6');
  abs('push-inner', 0.3, '#3 #6');
  speedup('push-inner', 'skopeo-inner', 20, 'faster than skopeo copy', '#3');
  composite('push-inner', ['build-archive', 'skopeo-inner'], 'vs write archive + skopeo');
  speedup('push-inner', 'skopeo-inner-nobic', 20, 'vs skopeo, no blob-info-cache', 'info');
  each(
    'push-inner',
    'layers uploaded',
    '= 1',
    (x) => (x.actions.uploaded ?? 0) === 1,
    (xs) => xs.map((x) => x.actions.uploaded ?? 0).join(' '),
    '#3',
  );
  abs('push-stateless', 1, '#3');
  readsApp('push-stateless', '#3');
  abs('push-unchanged', 0.2, '#3');
  each(
    'push-unchanged',
    'uploaded / read',
    '= 0 / 0',
    (x) => (x.actions.uploaded ?? 0) === 0 && x.bytesRead === 0,
    (xs) => xs.map((x) => `${x.actions.uploaded ?? 0}/${x.bytesRead}`).join(' '),
    '#3',
  );
  // #4's baseline is a docker-archive piped into `docker load`; `docker load -i` of an archive
  // already on disk (its making not timed) is the stricter one, shown beside it.
  ratio('load-cold', 'docker-pipe-cold', 1.0, 'vs archive | docker load', '#4');
  ratio('load-cold', 'docker-load-cold', null, 'vs docker load -i FILE', '');
  floor('load-cold', 'docker-load-cold');
  abs('load-inner', 1, '#4 #6');
  speedup('load-inner', 'docker-pipe-inner', 10, 'faster than archive | docker load', '#4');
  speedup('load-inner', 'docker-load-inner', null, 'faster than docker load -i FILE', 'info');
  composite('load-inner', ['build-archive', 'docker-load-inner'], 'vs write archive + docker load');
  readsApp('load-inner', '#4');
  if (churn)
    add(
      'churn-b',
      'new layer bytes / path layer',
      `${churn.ratio.toFixed(2)}×`,
      '≤ 2×',
      churn.ratio <= 2,
      '#6',
    );
  else add('churn-b', 'new layer bytes / path layer', 'n/a', '≤ 2×', null, '#6');
  const small = M.get('churn-a')?.rssMB;
  const big = M.get('build-none')?.rssMB;
  if (small && big)
    add('churn-a', 'RSS 1 GB closure / this', `${(big / small).toFixed(2)}×`, 'flat', null, '#2');
  add('total', 'bench/run wall time', secs(totalSeconds), '< 600 s', totalSeconds < 600, '#6');
  return out;
}

function detail(r) {
  const x = r.info?.at(-1);
  if (!x || typeof x !== 'object' || x.bytesRead === undefined) return '';
  const acts = Object.entries(x.actions ?? {})
    .map(([a, n]) => `${n} ${a}`)
    .join(', ');
  const parts = [`read ${size(x.bytesRead)}`, acts];
  if (x.actions?.written && x.size) parts.push(`blobs ${size(x.size)}`);
  else if (x.bytesSent) parts.push(`sent ${size(x.bytesSent)}`);
  return parts.filter(Boolean).join('; ');
}

function table(rows) {
  const head = ['what', 'median', 'runs', 'RSS', 'detail', 'check', 'value', 'goal', 'issue', 'result'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i] ?? '').length)));
  const line = (cells) =>
    cells
      .map((c, i) =>
        i === 1 || i === 2 || i === 3 ? String(c ?? '').padStart(w[i]) : String(c ?? '').padEnd(w[i]),
      )
      .join('  ')
      .trimEnd();
  return [
    line(head),
    w.map((n) => '-'.repeat(n)).join('  '),
    ...rows.map((r) => (r === '-' ? '' : line(r))),
  ].join('\n');
}

export function report({
  M,
  cfg,
  closure,
  churn,
  profile,
  machine,
  runId,
  resultsDir,
  totalSeconds,
  available,
}) {
  const cs = checks({ M, churn, totalSeconds, cores: machine.cores });
  const verdict = (c) =>
    c.pass === null ? (c.goal === 'info' || c.goal === 'flat' ? 'info' : 'n/a') : c.pass ? 'PASS' : 'MISS';
  const rows = [];
  let section;
  const all = [
    ...M.values(),
    { id: 'total', section: 'total', label: 'bench/run, everything above', kind: 'info' },
  ];
  for (const r of all) {
    if (r.section !== section) {
      if (section !== undefined) rows.push('-');
      section = r.section;
    }
    const mine = cs.filter((c) => c.id === r.id);
    const runs = r.times?.length ? String(r.times.length) : '';
    const med = r.error ? 'ERROR' : secs(r.id === 'total' ? totalSeconds : r.median);
    const first = [
      r.label,
      med,
      runs,
      r.rssMB ? `${r.rssMB.toFixed(0)} MB` : '',
      r.error ? r.error.slice(0, 60) : detail(r),
    ];
    if (!mine.length) rows.push(first);
    mine.forEach((c, i) =>
      rows.push([...(i === 0 ? first : ['', '', '', '', '']), c.label, c.value, c.goal, c.issue, verdict(c)]),
    );
  }
  const header =
    `nixoci bench ${runId}: ${closure.paths} store paths, ${closure.files} files, ${size(closure.fileBytes)} ` +
    `(${cfg.sizeMB} MiB asked), ${machine.cores} × ${machine.cpu}, node ${machine.node}, ` +
    `${machine.nixoci !== machine.root ? `nixoci from ${machine.nixoci}, repo ` : ''}commit ${machine.commit}${machine.dirty ? '+dirty src' : ''}; median of up to ${cfg.reps} runs ` +
    `(1 run when the first takes > ${cfg.slowS} s); load average ${machine.load.join(' → ')}` +
    (machine.load[0] > 1 ? ' (other work was running: figures are noisy)' : '');
  const missing = Object.entries(available)
    .filter(([, v]) => !v)
    .map(([k]) => `nixoci ${k}`);
  let text = `${header}\n${missing.length ? `not measured (command missing or skipped): ${missing.join(', ')}\n` : ''}\n${table(rows)}\n`;
  if (churn)
    text += `\nlayer churn: ${churn.paths} paths in ${churn.layers} layers; changing ${churn.changedPath.slice(44)} gave ${churn.newLayers} new layer(s) (${churn.newLayerPaths.join('+')} paths), ${size(churn.newLayerBytes)} vs ${size(churn.changedPathLayerSize)} for the path's own layer\n`;
  if (profile) {
    text += `\nprofile of a cold build, --compression none (${secs(profile.wall)} wall, ${(profile.totalMs / 1000).toFixed(2)} s sampled; ${profile.file}):\n`;
    for (const r of profile.rows)
      text += `  ${r.pct.toFixed(1).padStart(5)} %  ${r.ms.toFixed(0).padStart(6)} ms  ${r.fn}\n`;
  }
  const pass = cs.filter((c) => c.pass === true).length;
  const miss = cs.filter((c) => c.pass === false).length;
  text += `\ngoals: ${pass} PASS, ${miss} MISS, ${cs.filter((c) => c.pass === null).length} info/n/a\n`;
  process.stdout.write(`\n${text}`);

  const measurements = [...M.values()].map((r) => ({
    ...r,
    info: r.info?.map((x) => (x && typeof x === 'object' ? { ...x, layerList: undefined } : x)),
  }));
  const data = {
    runId,
    machine,
    config: cfg,
    closure,
    available,
    measurements,
    checks: cs,
    churn,
    profile,
    totalSeconds,
  };
  const jsonFile = join(resultsDir, `${runId}.json`);
  writeFileSync(jsonFile, `${JSON.stringify(data, (k, v) => (v instanceof Set ? [...v] : v), 2)}\n`);
  writeFileSync(join(resultsDir, 'latest.txt'), text);

  const bars = [...M.values()]
    .filter(
      (r) =>
        (r.kind === 'nixoci' || r.kind === 'baseline') &&
        r.median > 0 &&
        !r.error &&
        r.section !== 'layer churn',
    )
    .map((r) => {
      const mine = cs.filter((c) => c.id === r.id && c.pass !== null);
      return {
        section: r.section,
        label: r.label,
        seconds: r.median,
        kind: r.kind,
        verdict: mine.length ? (mine.every((c) => c.pass) ? 'PASS' : 'MISS') : undefined,
      };
    });
  const svg = barChartSvg({
    title: `nixoci bench — ${size(closure.fileBytes)}, ${closure.paths} store paths, ${closure.files} files`,
    subtitle: `${runId} · ${machine.cores} × ${machine.cpu} · ${machine.node} · commit ${machine.commit} · median wall time, log scale${churn ? ` · layer churn ${churn.ratio.toFixed(2)}× (goal ≤ 2×)` : ''}`,
    bars,
  });
  writeFileSync(join(resultsDir, 'latest.svg'), svg);
  process.stderr.write(`[bench] wrote ${jsonFile}, ${join(resultsDir, 'latest.svg')}, latest.txt\n`);
}
