import { NixociError } from '../../core/errors.js';
import { RegistryClient, type ClientOptions } from '../client.js';
import { formatReference, type ImageReference } from '../reference.js';
import {
  followIndexes,
  indexPlatforms,
  lazySource,
  parseConfig,
  parseManifest,
  type ImageSource,
  type SourceOptions,
} from './image-source.js';

export interface RegistrySourceOptions extends SourceOptions, Omit<ClientOptions, 'what' | 'reading'> {}

/**
 * An image in a registry (`docker://HOST/REPO[:TAG][@DIGEST]`): GET the manifest (and the
 * platform's manifest when it is an index), GET the config blob. Two or three small requests.
 */
export function registrySource(ref: ImageReference, o: RegistrySourceOptions = {}): ImageSource {
  const description = `docker://${formatReference(ref)}`;
  return lazySource(description, async (signal) => {
    const client = new RegistryClient(
      ref.registry,
      ref.host,
      { ...o, what: `read ${description}`, reading: true, ...(signal ? { signal } : {}) },
      ref.repository,
    );
    client.auth.addScope(ref.repository, 'pull');
    const repo = ref.repository;
    const top = await client.getManifest(repo, ref.digest ?? ref.tag ?? 'latest', signal);
    if (!top) {
      throw new NixociError('IMAGE_NOT_FOUND', `read ${description}: no such manifest`, {
        hint: `check the repository and tag (e.g. \`skopeo inspect ${description}\`)`,
      });
    }
    const topParsed = parseManifest(top.bytes, top.mediaType, description);
    const {
      parsed,
      got: manifest,
      via,
    } = await followIndexes(
      { parsed: topParsed, got: top },
      async (child) => {
        const got = await client.getManifest(repo, child.digest, signal);
        if (!got)
          throw new NixociError(
            'IMAGE_NOT_FOUND',
            `read ${description}: manifest ${child.digest} of its index is missing`,
            { hint: 'the registry holds an incomplete image; push it again' },
          );
        return { parsed: parseManifest(got.bytes, got.mediaType, `${description} (${child.digest})`), got };
      },
      o.arch,
      description,
    );
    const indexDigest = via ? top.digest : null;
    const config = parseConfig(
      await client.getBlob(repo, parsed.configDigest, signal),
      `${description} config`,
    );
    return {
      manifest: {
        mediaType: manifest.mediaType || null,
        digest: manifest.digest,
        indexDigest,
        configDigest: parsed.configDigest,
        layers: parsed.layers,
        annotations: parsed.annotations,
        indexAnnotations: via ? topParsed.annotations : null,
        indexPlatforms: via && topParsed.kind === 'index' ? indexPlatforms(topParsed.manifests) : null,
      },
      config,
    };
  });
}
