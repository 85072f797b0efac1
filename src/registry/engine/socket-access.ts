import { statSync } from 'node:fs';
import { readSmallFile } from '../../core/read-small-file.js';

/**
 * What to do about a socket this user may not connect to, from the socket's own owner, group and
 * mode: "add yourself to group docker" is wrong advice where the socket's group is another, has no
 * name, or has no access (a root-only 0600 socket, or group root).
 */
export function socketAccessHint(socketPath: string): string {
  let st;
  try {
    st = statSync(socketPath);
  } catch {
    return `check the access rights of ${socketPath}, or use a rootless engine`;
  }
  const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
  const owner = nameOf('/etc/passwd', st.uid) ?? `uid ${st.uid}`;
  const groupName = nameOf('/etc/group', st.gid);
  if ((st.mode & 0o060) === 0o060 && st.gid !== 0) {
    return groupName
      ? `${socketPath} is open to group ${groupName}: add yourself to it (\`sudo usermod -aG ${groupName} $USER\`) and log in again, or use a rootless engine`
      : `${socketPath} is open to group ${st.gid}, which has no name here: ask the admin to give that group a name and add you to it, or use a rootless engine`;
  }
  return `${socketPath} is usable by ${owner} only (owner ${owner}, group ${groupName ?? st.gid}, mode ${mode}): run nixoci as ${owner}, have the engine give the socket a group you are in (dockerd --group), or use a rootless engine`;
}

/** The name of `id` in a group(5) or passwd(5) file (`name:x:id:…`), if any. */
function nameOf(file: string, id: number): string | undefined {
  const text = readSmallFile(file, 16 << 20);
  for (const line of text?.split('\n') ?? []) {
    const f = line.split(':');
    if (f.length >= 3 && f[2] === String(id) && f[0]) return f[0];
  }
  return undefined;
}
