// Typed access to the environment written by `scripts/services start` (.state/env.json).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** Repository root (this file lives in <root>/test/helpers/). */
export const repoRoot: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Directory holding the services' state (pids, logs, keys, registry storage). */
export const stateDir: string = path.join(repoRoot, '.state');

export interface TestEnv {
  /** Plain registry, no auth, e.g. "127.0.0.1:5000". */
  registry: string;
  /** Registry with htpasswd basic auth, e.g. "127.0.0.1:5001". */
  registryBasic: string;
  registryBasicUser: string;
  registryBasicPassword: string;
  /** Registry with token auth, realm http://127.0.0.1:<tokenPort>/token, e.g. "127.0.0.1:5002". */
  registryToken: string;
  /** PEM private key (PKCS#8, RSA 2048) the test token server signs JWTs with. */
  tokenKeyFile: string;
  /** PEM self-signed certificate: the token registry's rootcertbundle. */
  tokenCertFile: string;
  /** Port the token registry expects the token server on (start it with startTokenServer). */
  tokenPort: number;
  /** `service` the token registry announces and expects as JWT audience. */
  tokenService: string;
  /** `issuer` the token registry expects in JWTs. */
  tokenIssuer: string;
  /** Docker engine, e.g. "unix:///…/.state/docker.sock". */
  dockerHost: string;
  /** Docker CLI binary to use (Debian's /usr/bin/docker). */
  dockerCli: string;
  /** HTTPS registry, "registry.nixoci.test:5443" (the name maps to 127.0.0.1 in /etc/hosts). */
  registryTls: string;
  /** PEM certificate of the test CA that signed the HTTPS registry's certificate. */
  tlsCaFile: string;
  /** Podman API service (`podman system service`), e.g. "unix:///…/.state/podman.sock". */
  podmanHost: string;
  /** The service's image store: `podman --root` (test/helpers/podman.ts uses the same store). */
  podmanRoot: string;
  /** `podman --runroot` of the service. */
  podmanRunroot: string;
  /** `podman --storage-driver` of the service: overlay, or vfs if overlay was refused. */
  podmanStorageDriver: string;
}

const KEYS = {
  registry: 'NIXOCI_TEST_REGISTRY',
  registryBasic: 'NIXOCI_TEST_REGISTRY_BASIC',
  registryBasicUser: 'NIXOCI_TEST_REGISTRY_BASIC_USER',
  registryBasicPassword: 'NIXOCI_TEST_REGISTRY_BASIC_PASSWORD',
  registryToken: 'NIXOCI_TEST_REGISTRY_TOKEN',
  tokenKeyFile: 'NIXOCI_TEST_TOKEN_KEY',
  tokenCertFile: 'NIXOCI_TEST_TOKEN_CERT',
  tokenPort: 'NIXOCI_TEST_TOKEN_PORT',
  tokenService: 'NIXOCI_TEST_TOKEN_SERVICE',
  tokenIssuer: 'NIXOCI_TEST_TOKEN_ISSUER',
  dockerHost: 'NIXOCI_TEST_DOCKER_HOST',
  dockerCli: 'NIXOCI_TEST_DOCKER_CLI',
  registryTls: 'NIXOCI_TEST_REGISTRY_TLS',
  tlsCaFile: 'NIXOCI_TEST_TLS_CA',
  podmanHost: 'NIXOCI_TEST_PODMAN_HOST',
  podmanRoot: 'NIXOCI_TEST_PODMAN_ROOT',
  podmanRunroot: 'NIXOCI_TEST_PODMAN_RUNROOT',
  podmanStorageDriver: 'NIXOCI_TEST_PODMAN_STORAGE_DRIVER',
} as const;

/** Optional defaults for keys added after a .state/env.json was written. */
const DEFAULTS: Partial<Record<keyof typeof KEYS, string>> = {
  tokenService: 'nixoci-test-registry',
  tokenIssuer: 'nixoci-test-issuer',
  dockerCli: 'docker',
};

let cached: TestEnv | undefined;

/**
 * The test services' coordinates, from <repo>/.state/env.json.
 * Throws "services not started: run scripts/services start" if that file is missing.
 */
export function testEnv(): TestEnv {
  if (cached) return cached;
  const file = path.join(stateDir, 'env.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`services not started: run scripts/services start (no ${file})`);
    }
    throw err;
  }
  const raw = JSON.parse(text) as Record<string, unknown>;
  const get = (k: keyof typeof KEYS): string => {
    const v = raw[KEYS[k]] ?? DEFAULTS[k];
    if (typeof v !== 'string' || v === '') {
      throw new Error(`${file}: missing ${KEYS[k]}; re-run scripts/services start`);
    }
    return v;
  };
  const env: TestEnv = {
    registry: get('registry'),
    registryBasic: get('registryBasic'),
    registryBasicUser: get('registryBasicUser'),
    registryBasicPassword: get('registryBasicPassword'),
    registryToken: get('registryToken'),
    tokenKeyFile: get('tokenKeyFile'),
    tokenCertFile: get('tokenCertFile'),
    tokenPort: Number(get('tokenPort')),
    tokenService: get('tokenService'),
    tokenIssuer: get('tokenIssuer'),
    dockerHost: get('dockerHost'),
    dockerCli: get('dockerCli'),
    registryTls: get('registryTls'),
    tlsCaFile: get('tlsCaFile'),
    podmanHost: get('podmanHost'),
    podmanRoot: get('podmanRoot'),
    podmanRunroot: get('podmanRunroot'),
    podmanStorageDriver: get('podmanStorageDriver'),
  };
  cached = env;
  return env;
}
