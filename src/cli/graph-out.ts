import { childProcess } from '../core/builtins.js';
import { realpathSync } from 'node:fs';
import { extname } from 'node:path';
import type { Closure } from '../closure/closure.js';
import { atomicWrite } from '../core/atomic-write.js';
import { closureToDot } from '../closure/dot.js';
import { NixociError, reason } from '../core/errors.js';
import type { Arch } from '../image/image.js';

/**
 * `--graph-out FILE`'s name, checked before the closure is built: found after it, a wrong suffix
 * failed the run once nix-build was done.
 */
export function checkGraphOut(command: string, file: string): void {
  const ext = extname(file).toLowerCase();
  if (ext !== '.dot' && ext !== '.gv' && ext !== '.svg') {
    throw new NixociError(
      'USAGE',
      `nixoci ${command}: --graph-out ${file}: expected a .dot or .svg file name`,
      {
        hint: 'e.g. --graph-out closure.svg',
      },
    );
  }
}

/**
 * `--graph-out FILE`: the closure graph as Graphviz dot, or as SVG rendered by `dot -Tsvg` when
 * FILE ends in .svg. With several architectures, each gets its own file (`graph.arm64.svg`).
 */
export async function writeGraph(
  file: string,
  closures: ReadonlyMap<Arch, Closure>,
  log: (line: string) => void,
): Promise<void> {
  const ext = extname(file).toLowerCase();
  checkGraphOut('inspect', file);
  for (const [arch, closure] of closures) {
    const out = closures.size > 1 ? `${file.slice(0, -ext.length)}.${arch}${ext}` : file;
    const dot = closureToDot(closure);
    const data = ext === '.svg' ? await renderSvg(dot, out, log) : dot;
    // Replaced whole or not at all: a full disk must not leave a truncated graph, nor an empty one
    // in place of the last (through a symlink, the file it names: the link stays).
    try {
      atomicWrite(existingTarget(out), data);
    } catch (e) {
      throw new NixociError('TARGET_WRITE', `cannot write ${out}: ${reason(e)}`, {
        hint: 'check the directory',
        cause: e,
      });
    }
  }
}

function existingTarget(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

/**
 * The SVG that `dot -Tsvg` renders, read from its standard output: dot does not check its writes,
 * and with `-o FILE` on a full disk leaves a truncated file and exits 0.
 */
function renderSvg(dot: string, out: string, log: (line: string) => void): Promise<Buffer> {
  const bin = process.env.NIXOCI_DOT ?? 'dot';
  log(`running: ${bin} -Tsvg (for ${out})`);
  return new Promise((resolve, reject) => {
    const child = childProcess().spawn(bin, ['-Tsvg'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const svg: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => svg.push(b));
    const err: Buffer[] = [];
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      const hint =
        e.code === 'ENOENT'
          ? 'install Graphviz (Debian: apt-get install graphviz) or write a .dot file'
          : undefined;
      reject(
        new NixociError('TARGET_WRITE', `cannot run ${bin}: ${reason(e)}`, { ...(hint ? { hint } : {}) }),
      );
    });
    child.on('close', (code) => {
      if (code === 0) return resolve(Buffer.concat(svg));
      const tail = Buffer.concat(err).toString('utf8').trim().split('\n').slice(-2).join(' | ');
      reject(
        new NixociError('TARGET_WRITE', `${bin} -Tsvg failed: ${tail || `exit ${code}`}`, {
          hint: `check ${bin} (Graphviz) with \`${bin} -V\``,
        }),
      );
    });
    child.stdin.on('error', () => {
      // reported through the exit status
    });
    child.stdin.end(dot);
  });
}
