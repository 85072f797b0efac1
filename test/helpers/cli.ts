// Runs the built CLI (dist/, made by `npm run build`) as a child process, the way users run it.
import { execFile } from 'node:child_process';
import path from 'node:path';
import {
  diffReportSchema,
  imageReportSchema,
  inspectImageReportSchema,
  inspectPlanReportSchema,
} from '../../src/cli/report-schema.js';
import { repoRoot } from './env.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export const cliBin = path.join(repoRoot, 'bin', 'nixoci.js');

export function nixoci(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; umask?: string } = {},
): Promise<CliResult> {
  // bin/nixoci.js itself, as its #! line runs it (a shell part, then Node). A umask can only be set
  // for a child through a shell; the arguments stay an array ("$@").
  const [cmd, argv] = opts.umask
    ? ['sh', ['-c', `umask ${opts.umask} && exec "$0" "$@"`, cliBin, ...args]]
    : [cliBin, args];
  return new Promise((resolve) => {
    execFile(
      cmd,
      argv,
      {
        cwd: opts.cwd ?? repoRoot,
        env: { ...process.env, ...opts.env },
        maxBuffer: 64 << 20,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs the CLI with --json and parses its report; fails with the CLI's stderr when it did not succeed. */
export async function nixociJson<T = Record<string, unknown>>(
  args: string[],
  opts: Parameters<typeof nixoci>[1] = {},
): Promise<T> {
  const r = await nixoci([...args, '--json'], opts);
  if (r.code !== 0) throw new Error(`nixoci ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  const json: unknown = JSON.parse(r.stdout);
  // Every image report must match the documented schema (docs/json.md).
  if (args[0] === 'build' || args[0] === 'push' || args[0] === 'load') imageReportSchema.parse(json);
  else if (args[0] === 'diff') diffReportSchema.parse(json);
  else if (args[0] === 'inspect')
    (Object.hasOwn(json as object, 'image') ? inspectImageReportSchema : inspectPlanReportSchema).parse(json);
  return json as T;
}
