import type { Closure } from '../closure/closure.js';
import { closureFromPaths, loadGraphFile } from '../closure/load.js';
import { parseStorePath } from '../closure/store-path.js';
import type { Arch } from '../image/image.js';
import { usage } from './flags.js';

export interface SourceFlags {
  readonly graph?: readonly string[];
  readonly path?: readonly string[];
}

/**
 * Turns the source flags into one closure per requested architecture. A flag value may be prefixed
 * with `ARCH=` (`--graph arm64=g.json`) to give that architecture its own closure; an unprefixed
 * value applies to every architecture.
 */
export async function resolveClosures(
  command: string,
  flags: SourceFlags,
  positionals: readonly string[],
  arches: readonly Arch[],
  log: (line: string) => void,
): Promise<Map<Arch, Closure>> {
  const graphs = flags.graph ?? [];
  const paths = [...(flags.path ?? []), ...positionals.filter((p) => p.startsWith('/'))];
  if (graphs.length > 0 && paths.length > 0) throw usage(command, 'give either --graph or --path, not both');
  if (graphs.length === 0 && paths.length === 0) {
    throw usage(command, 'no source: give --graph FILE or --path STOREPATH');
  }
  const out = new Map<Arch, Closure>();
  for (const arch of arches) {
    if (graphs.length > 0) {
      const file = pick(command, graphs, arch, '--graph');
      if (file.length !== 1)
        throw usage(command, `give one --graph per architecture (${arch} has ${file.length})`);
      out.set(arch, await loadGraphFile(file[0]!, { log }));
    } else {
      const ps = pick(command, paths, arch, '--path').map((p) => parseStorePath(p, '--path'));
      out.set(arch, await closureFromPaths(ps, { log }));
    }
  }
  return out;
}

function pick(command: string, values: readonly string[], arch: Arch, flag: string): string[] {
  const own: string[] = [];
  const shared: string[] = [];
  for (const v of values) {
    const m = /^(amd64|arm64)=(.*)$/.exec(v);
    if (m) {
      if (m[1] === arch) own.push(m[2]!);
    } else if (/^[a-z0-9]+=/.test(v) && !v.startsWith('/')) {
      throw usage(command, `${flag} ${v}: unknown architecture prefix (use amd64= or arm64=)`);
    } else shared.push(v);
  }
  return own.length > 0 ? own : shared;
}
