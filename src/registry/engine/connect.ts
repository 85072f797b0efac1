import { NixociError, reason } from '../../core/errors.js';
import { EngineClient, type EngineVersion } from './client.js';
import { discoverEndpoints, type DiscoverOptions } from './discover.js';

export interface ConnectedEngine {
  readonly client: EngineClient;
  readonly version: EngineVersion;
}

/**
 * Finds the engine the way the docker CLI does (see discoverEndpoints) and negotiates the API
 * version with the first endpoint that answers. An error that is not "nobody listens here"
 * (permission denied, API too old) stops the search: that engine exists and is the user's.
 */
export async function connectEngine(
  o: DiscoverOptions & {
    signal?: AbortSignal;
    /** Called with each endpoint's client just before its negotiation, to start requests alongside. */
    early?: (client: EngineClient) => void;
  },
): Promise<ConnectedEngine> {
  const endpoints = discoverEndpoints(o);
  const failures: string[] = [];
  for (const ep of endpoints) {
    const client = new EngineClient(ep, o.engine);
    o.early?.(client);
    try {
      const version = await client.negotiate(o.signal);
      return { client, version };
    } catch (e) {
      if (
        !(e instanceof NixociError) ||
        e.code !== 'DAEMON_UNREACHABLE' ||
        /permission denied/.test(e.message)
      )
        throw e;
      if (endpoints.length === 1) throw e;
      failures.push(`${ep.address} (${ep.source}): ${reason(e.cause ?? e)}`);
    }
  }
  const what = o.engine === 'podman' ? 'Podman' : 'Docker engine';
  throw new NixociError('DAEMON_UNREACHABLE', `no ${what} reachable; tried ${failures.join('; ')}`, {
    hint:
      o.engine === 'podman'
        ? 'start the Podman API service (`podman system service` or `systemctl --user start podman.socket`), or name it with --host'
        : 'start the Docker engine, or name it with --host, DOCKER_HOST or a docker context',
  });
}
