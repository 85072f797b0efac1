import { NixociError } from '../../core/errors.js';
import { isDigest } from '../../core/digest.js';
import { errorMessage, type ImageInspect } from '../engine/client.js';
import { connectEngine } from '../engine/connect.js';
import type { EngineKind } from '../engine/discover.js';
import { readArchive } from './docker-archive-source.js';
import { invalidImage, lazySource, type ImageSource, type LoadedImage } from './image-source.js';
import { streamReader } from './tar-scan.js';

export interface EngineSourceOptions {
  readonly engine: EngineKind;
  /** Engine address (`unix://…`, `tcp://…`, `ssh://…`); default: found like the docker CLI does. */
  readonly host?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * An image in the Docker engine (`docker-daemon:NAME:TAG`) or Podman (`podman:NAME:TAG`): the
 * engine's `GET /images/{name}/get` archive is streamed through and only its manifest.json and
 * config are kept (layer bytes pass by and are dropped), so the layer sizes are the exact tar sizes
 * and the history is the config's own, empty layers included.
 */
export function engineSource(name: string, o: EngineSourceOptions): ImageSource {
  const scheme = o.engine === 'podman' ? 'podman' : 'docker-daemon';
  const description = `${scheme}:${name}`;
  return lazySource(description, async (signal) => {
    const { client } = await connectEngine({
      engine: o.engine,
      ...(o.host ? { host: o.host } : {}),
      ...(o.env ? { env: o.env } : {}),
      ...(signal ? { signal } : {}),
    });
    const inspected = await client.imageInspect(name, signal);
    if (!inspected) {
      throw new NixociError('IMAGE_NOT_FOUND', `read ${description}: the engine has no such image`, {
        hint: `check the name with \`${o.engine} images\``,
      });
    }
    // An image without layers (FROM scratch and metadata only) cannot be exported by Docker 20.10
    // ("empty export - not implemented"); its config is all there is, and the inspect holds it.
    if (inspected.layers.length === 0) return withoutLayers(inspected, description);
    const res = await client.request('GET', `/images/${encodeURIComponent(name)}/get`, { signal });
    if (res.status !== 200) {
      // the engine's own words
      const why = await errorMessage(res);
      throw new NixociError(
        'DAEMON',
        `read ${description}: the engine answered HTTP ${res.status} to images/get: ${why}`,
        { hint: 'see the engine log for details' },
      );
    }
    const reader = streamReader(res.body, () => res.body.destroy());
    try {
      return await readArchive(reader, undefined, description);
    } finally {
      await reader.close();
    }
  });
}

/** The image an engine's inspect describes, when it has no layers: config digest = image ID. */
function withoutLayers(i: ImageInspect, description: string): LoadedImage {
  const id = i.id.startsWith('sha256:') ? i.id : `sha256:${i.id}`; // Podman's IDs have no algorithm
  if (!isDigest(id))
    throw invalidImage(description, `the engine names it ${JSON.stringify(i.id)}, no digest`);
  return {
    manifest: {
      mediaType: null,
      digest: null,
      indexDigest: null,
      configDigest: id,
      layers: [],
      annotations: {},
      indexAnnotations: null,
      indexPlatforms: null,
    },
    config: {
      ...(i.architecture !== undefined ? { architecture: i.architecture } : {}),
      ...(i.os !== undefined ? { os: i.os } : {}),
      ...(i.variant ? { variant: i.variant } : {}),
      ...(i.created !== undefined ? { created: i.created } : {}),
      config: i.config ?? null,
      rootfs: { type: 'layers', diff_ids: [] },
    },
  };
}
