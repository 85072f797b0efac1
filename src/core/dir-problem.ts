import { accessSync, constants, statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Why files could not be made in DIR, or undefined when, as far as can be told before writing, they
 * can (a full disk, or a directory removed meanwhile, still fails the write itself). With `create`,
 * DIR may be missing so long as its nearest existing ancestor is a writable directory (`mkdir -p`).
 */
export function dirProblem(dir: string, create: boolean): string | undefined {
  let d = dir;
  let st = statOrMissing(d);
  if (st === 'missing' && !create) return `directory ${dir} does not exist`;
  while (st === 'missing' && dirname(d) !== d) {
    d = dirname(d);
    st = statOrMissing(d);
  }
  // anything else (a name too long, a directory one cannot search) the write reports as it is
  if (st === undefined) return undefined;
  if (st === 'missing') return `directory ${dir} does not exist`;
  if (!st.isDirectory()) return `${d} is not a directory`;
  try {
    accessSync(d, constants.W_OK);
  } catch (e) {
    return `directory ${d} is not writable (${(e as NodeJS.ErrnoException).code ?? 'unknown'})`;
  }
  return undefined;
}

/**
 * stat; `missing` when nothing is there (ENOENT, or ENOTDIR: a file where a directory would be),
 * undefined when stat fails otherwise.
 */
export function statOrMissing(p: string): Stats | 'missing' | undefined {
  try {
    return statSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : undefined;
  }
}
