import { resolve } from 'node:path';
import type { Arch } from '../image/image.js';
import {
  customisationLayer,
  NO_SHELL,
  ROOT_USER,
  type CopySpec,
  type ImageUser,
} from '../layer/customise.js';
import type { ArchCustomisation, ImageSettings } from './assemble.js';
import { usage } from './flags.js';
import type { ResolvedSource } from './source.js';

export interface CustomiseFlagValues {
  preset?: string;
  copy?: string[];
  'bin-farm'?: boolean;
  'ignore-collisions'?: boolean;
  user?: string;
  workdir?: string;
  env?: string[];
}

interface Preset {
  readonly user: ImageUser;
  readonly workdir?: string;
  readonly preferShell?: string;
}

/** runtime: a non-root app user owning its workdir; devcontainer: a non-root user with a shell. */
const PRESETS: Readonly<Record<string, Preset>> = {
  runtime: { user: { name: 'app', uid: 1000, gid: 1000, home: '/home/app' }, workdir: '/app' },
  devcontainer: {
    user: { name: 'vscode', uid: 1000, gid: 1000, home: '/home/vscode' },
    workdir: '/workspaces',
    preferShell: 'bash',
  },
};

type UserFlag =
  | { readonly kind: 'none' }
  /** NAME or NAME:UID: a user created in /etc/passwd (only NAME:UID asks for the layer by itself). */
  | { readonly kind: 'create'; readonly user: ImageUser; readonly explicitUid: boolean }
  /** UID or UID:GID: written to the config as given. */
  | { readonly kind: 'raw'; readonly value: string };

const MAX_ID = 0x7fffffff;

function parseUser(command: string, v: string | undefined): UserFlag {
  if (v === undefined) return { kind: 'none' };
  // As the engines: docker and runc refuse to run an image whose uid or gid is above 2^31-1.
  if (/^\d+(:\d+)?$/.test(v)) {
    if (v.split(':').some((id) => Number(id) > MAX_ID))
      throw usage(command, `--user ${v}: uids and gids must be in the range 0-${MAX_ID}`);
    return { kind: 'raw', value: v };
  }
  const m = /^([a-z_][a-z0-9_-]{0,31})(?::(\d+))?$/.exec(v);
  // USER:GROUP with a group name (1000:users, app:staff): nixoci writes no /etc/group entries.
  if (!m && /^[\w-]+:[a-z_][a-z0-9_-]*$/.test(v))
    throw usage(command, `--user ${v}: group names are refused; give the numeric GID (e.g. --user 1000:100)`);
  // A name the image has no /etc/passwd entry for would only fail at `docker run`.
  if (!m)
    throw usage(
      command,
      `--user ${JSON.stringify(v)}: expected UID[:GID] or NAME[:UID] (NAME: a-z, 0-9, _ and -, starting with a letter or _)`,
    );
  const name = m[1]!;
  if (name === 'root') {
    if (m[2] !== undefined && m[2] !== '0') throw usage(command, `--user ${v}: root has uid 0`);
    return { kind: 'create', user: ROOT_USER, explicitUid: m[2] !== undefined };
  }
  // nobody is 65534 everywhere (the overflow uid of NFS and user namespaces), never a uid of the app.
  const uid = m[2] === undefined ? (name === 'nobody' ? 65534 : 1000) : Number(m[2]);
  if (uid > MAX_ID) throw usage(command, `--user ${v}: uids must be in the range 0-${MAX_ID}`);
  return {
    kind: 'create',
    user: { name, uid, gid: uid, home: `/home/${name}` },
    explicitUid: m[2] !== undefined,
  };
}

function parseCopy(command: string, v: string): CopySpec {
  const i = v.indexOf(':/');
  if (i <= 0) throw usage(command, `--copy ${v}: expected SRC:/ABSOLUTE/DEST`);
  return { src: resolve(v.slice(0, i)), dest: v.slice(i + 1) };
}

/**
 * Adds the customisation layer (one per architecture: the bin farm links differ) and the config
 * it implies, when a devbox project, --preset, --user NAME:UID, --copy or --bin-farm asks for it.
 * Plain --graph/--path images stay exactly as they were. Env precedence: the layer's defaults
 * (PATH, HOME, SSL_CERT_FILE), then devbox.json's env, then --env.
 */
export function applyCustomisation(
  command: string,
  settings: ImageSettings,
  source: ResolvedSource,
  v: CustomiseFlagValues,
): ImageSettings {
  const preset = v.preset === undefined ? undefined : PRESETS[v.preset];
  if (v.preset !== undefined && !preset) {
    throw usage(command, `--preset ${v.preset}: expected ${Object.keys(PRESETS).join(' or ')}`);
  }
  const user = parseUser(command, v.user);
  const copies = (v.copy ?? []).map((c) => parseCopy(command, c));
  const wanted =
    source.devbox !== undefined ||
    preset !== undefined ||
    (user.kind === 'create' && user.explicitUid) ||
    copies.length > 0 ||
    Boolean(v['bin-farm']);
  if (!wanted) {
    // Without the layer the image has no /etc/passwd, and the engine cannot resolve a name at run.
    if (user.kind === 'create') {
      if (user.user.uid === 0) return { ...settings, run: { ...settings.run, user: '0:0' } };
      throw usage(
        command,
        `--user ${v.user}: the image has no /etc/passwd to find ${user.user.name} in; give --user ${user.user.name}:UID to create the user (customisation layer), or a numeric --user UID[:GID]`,
      );
    }
    return settings;
  }
  // The customisation layer takes one layer of the budget, and the store paths need at least one.
  if (settings.maxLayers < 2) {
    throw usage(
      command,
      `--max-layers ${settings.maxLayers}: the customisation layer needs a layer of its own besides the store paths; use 2 or more`,
    );
  }

  const imageUser = user.kind === 'create' ? user.user : (preset?.user ?? ROOT_USER);
  const workdir = v.workdir ?? preset?.workdir;
  const perArch = new Map<Arch, ArchCustomisation>();
  for (const [arch, closure] of source.closures) {
    const layer = customisationLayer(closure, {
      user: imageUser,
      ...(workdir ? { workdir } : {}),
      ignoreCollisions: Boolean(v['ignore-collisions']),
      copies,
      ...(preset?.preferShell ? { preferShell: preset.preferShell } : {}),
    });
    // As devbox does: $PATH and $PWD in a value are expanded (here: the image's PATH so far, and its
    // working directory), nothing else.
    const path = layer.env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '';
    // `$PWD/x` with the workdir `/` is `/x`, not `//x`: the slash after it is dropped when the
    // directory already ends with one.
    const pwd = workdir ?? '/';
    const expand = (val: string): string =>
      val.replace(
        /\$(?:\{(PATH|PWD)\}|(PATH|PWD)(?![A-Za-z0-9_]))(\/?)/g,
        (_m, a: string | undefined, b: string | undefined, slash: string) =>
          (a ?? b) === 'PATH' ? path + slash : pwd.endsWith('/') ? pwd : pwd + slash,
      );
    const devboxEnv = Object.entries(source.devbox?.project.env ?? {}).map(
      ([k, val]) => `${k}=${expand(val)}`,
    );
    // A numeric --user that is not the layer's user has no passwd entry, so no home of its own:
    // HOME is / for it, as the engines make it, not the layer user's home it could not enter.
    const rawUid = user.kind === 'raw' ? Number(user.value.split(':')[0]) : undefined;
    const layerEnv =
      rawUid !== undefined && rawUid !== imageUser.uid
        ? layer.env.map((e) => (e.startsWith('HOME=') ? 'HOME=/' : e))
        : layer.env;
    // As docker's base images (`CMD ["/bin/sh"]`): `docker run IMAGE` gets the linked shell
    // rather than "No command specified". `--entrypoint ''` or `--cmd ''` (an empty list) keeps none.
    const defaultCmd =
      settings.run.entrypoint === undefined && settings.run.cmd === undefined && layer.shell !== NO_SHELL
        ? [layer.shell]
        : undefined;
    perArch.set(arch, {
      extra: layer.entries,
      env: mergeEnv([...layerEnv, ...devboxEnv, ...settings.run.env]),
      ...(defaultCmd ? { cmd: defaultCmd } : {}),
    });
  }
  // Numeric, so that runAsNonRoot checks work: --user root (or root:0) as 0:0, as without the layer.
  const configUser =
    user.kind === 'raw'
      ? user.value
      : user.kind === 'none' && imageUser.name === 'root'
        ? settings.run.user
        : `${imageUser.uid}:${imageUser.gid}`;
  return {
    ...settings,
    perArch,
    run: {
      ...settings.run,
      ...(configUser !== undefined ? { user: configUser } : {}),
      ...(workdir !== undefined ? { workdir } : {}),
    },
  };
}

/** KEY=VALUE entries with later keys replacing earlier ones, in first-seen order. */
export function mergeEnv(env: readonly string[]): string[] {
  const byKey = new Map<string, string>();
  for (const e of env) {
    const k = e.slice(0, e.indexOf('='));
    byKey.set(k, e);
  }
  return [...byKey.values()];
}
