import { diffImages, type ImageDiff } from '../../registry/read/image-diff.js';
import { outputOptions, parseFlags, usage, type OptionSpec } from '../flags.js';
import {
  HELP_IMAGE_READ_FLAGS,
  HELP_IMAGE_REFS,
  imageReadOptions,
  openImageSource,
  refuseUnusedReadFlags,
} from '../image-ref.js';
import {
  cell,
  count,
  pathsLabel,
  platformOf,
  readImage,
  shortDigest,
  sizeOf,
  type ImageJson,
} from '../image-report.js';
import { humanSize, JSON_SCHEMA_VERSION, type Io } from '../output.js';

export const diffOptions = { ...imageReadOptions, ...outputOptions } as const satisfies OptionSpec;

export const DIFF_HELP = `Usage: nixoci diff IMAGE_A IMAGE_B [flags]

Compare two images: the layers they share (same diffID, whatever their compression), the layers
only one of them has, and the store paths added, removed and changed (a path whose name without
hash is on both sides, e.g. app changed from /nix/store/aaa-app to /nix/store/bbb-app). Reads only
manifests and configs.

${HELP_IMAGE_REFS}
${HELP_IMAGE_READ_FLAGS}
Output:
  --json                        print one JSON report on stdout (schema: docs/json.md)
  -q, --quiet                   print nothing but errors
  -v, --verbose                 print what is read and each registry exchange, A: or B: first
  -h, --help                    this help

Exit codes: 0 success (whether or not the images differ), 1 failure, 2 usage error, 130 interrupted.
`;

export async function diffCommand(argv: readonly string[], io: Io, signal?: AbortSignal): Promise<number> {
  const { values, positionals } = parseFlags('diff', argv, diffOptions);
  if (values.help) {
    io.out(DIFF_HELP);
    return 0;
  }
  if (positionals.length !== 2)
    throw usage(
      'diff',
      `needs two images, got ${positionals.length} (e.g. diff oci:./old docker://host/app:v2)`,
    );
  if (positionals.every((p) => /^docker-archive:-(:|$)/.test(p)))
    throw usage('diff', 'only one image can come from standard input (docker-archive:-)');
  // --verbose: the two images are read at once, so each line says for which side it is
  const log = (side: string) => (values.verbose ? (l: string): void => io.err(`${side}: ${l}\n`) : undefined);
  const sources = positionals.map((p, i) => openImageSource('diff', p, values, log(i === 0 ? 'A' : 'B')));
  refuseUnusedReadFlags('diff', positionals, values);
  if (values.verbose) sources.forEach((s, i) => io.err(`${i === 0 ? 'A' : 'B'}: reading ${s.description}\n`));
  const [a, b] = (await Promise.all(sources.map((s) => readImage(s, signal)))) as [ImageJson, ImageJson];
  const d = diffImages(a.layers, b.layers);
  if (values.json) {
    const { layers: _la, ...sa } = a;
    const { layers: _lb, ...sb } = b;
    io.out(
      JSON.stringify({ schemaVersion: JSON_SCHEMA_VERSION, command: 'diff', a: sa, b: sb, ...d }) + '\n',
    );
  } else if (!values.quiet) printDiff(io, a, b, d);
  return 0;
}

function printDiff(io: Io, a: ImageJson, b: ImageJson, d: ImageDiff): void {
  const line = (s: string): void => io.out(s + '\n');
  for (const [tag, img] of [
    ['A', a],
    ['B', b],
  ] as const)
    line(
      // the platform: an index is read for one (--arch), which may not be the other side's
      `${tag}: ${cell(img.reference)}  ${cell(platformOf(img))}  ${count(img.layerCount, 'layer')}, ${sizeOf(img.layers)}  config ${shortDigest(img.configDigest)}`,
    );
  // the shared layers' size on each side: the same content, stored compressed or not
  const sharedA = d.shared.map((s) => a.layers[s.indexA]!);
  const sharedB = d.shared.map((s) => b.layers[s.indexB]!);
  line(
    `shared: ${count(d.shared.length, 'layer')}, ${sizeOf(sharedA)} in A, ${sizeOf(sharedB)} in B; only in A: ${d.onlyA.length} (${sizeOf(d.onlyA)}); only in B: ${d.onlyB.length} (${sizeOf(d.onlyB)})`,
  );
  line('');
  line(
    `${'A'.padEnd(4)}${'B'.padEnd(4)}${'SIZE A'.padStart(11)}${'SIZE B'.padStart(11)}  ${'DIFF ID'.padEnd(19)}  STORE PATHS`,
  );
  const rows = [
    ...d.shared.map((s) => ({
      key: s.indexB,
      a: String(s.indexA),
      b: String(s.indexB),
      sa: humanSize(s.sizeA),
      sb: humanSize(s.sizeB),
      id: s.diffId,
      paths: cell(s.storePaths.join(' ')) || '-',
    })),
    ...d.onlyB.map((l) => ({
      key: l.index,
      a: '-',
      b: String(l.index),
      sa: '',
      sb: humanSize(l.size),
      id: l.diffId,
      paths: pathsLabel(l),
    })),
  ].sort((x, y) => x.key - y.key);
  const onlyA = d.onlyA.map((l) => ({
    a: String(l.index),
    b: '-',
    sa: humanSize(l.size),
    sb: '',
    id: l.diffId,
    paths: pathsLabel(l),
  }));
  for (const r of [...rows, ...onlyA])
    line(
      `${r.a.padEnd(4)}${r.b.padEnd(4)}${r.sa.padStart(11)}${r.sb.padStart(11)}  ${shortDigest(r.id).padEnd(19)}  ${r.paths}`,
    );
  const p = d.storePaths;
  line('');
  line(
    `store paths: ${p.changed.length} changed, ${p.added.length} added, ${p.removed.length} removed, ${p.unchanged} unchanged`,
  );
  for (const c of p.changed)
    line(
      `  ~ ${cell(c.name)} changed from ${cell(c.from.path)} to ${cell(c.to.path)} (layer ${humanSize(c.from.layerSize)} → ${humanSize(c.to.layerSize)})`,
    );
  for (const r of p.added) line(`  + ${cell(r.path)} (layer ${r.layer}, ${humanSize(r.layerSize)})`);
  for (const r of p.removed) line(`  - ${cell(r.path)} (layer ${r.layer}, ${humanSize(r.layerSize)})`);
}
