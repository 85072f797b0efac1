import { digestHex } from '../../core/digest.js';
import { NixociError } from '../../core/errors.js';
import { MAX_CONFIG, MAX_MANIFEST } from '../client.js';
import { openArchive } from './docker-archive-source.js';
import { invalidImage, lazySource, type ImageSource, type SourceOptions } from './image-source.js';
import { readLayout } from './oci-layout-source.js';
import { scanTar } from './tar-scan.js';

/**
 * An image in an OCI archive (`oci-archive:FILE[:TAG]`): an OCI image layout as one tar, plain or
 * compressed, as `skopeo copy … oci-archive:` and `podman save --format oci-archive` write it.
 * Read as the layout it holds; only index.json and the JSON blobs (manifests, indexes, configs) are
 * kept as the tar passes, layers are skipped.
 */
export function ociArchiveSource(file: string, tag: string | undefined, o: SourceOptions = {}): ImageSource {
  const description = `oci-archive:${file}${tag !== undefined ? `:${tag}` : ''}`;
  return lazySource(description, async (signal) => {
    const what =
      'oci-archive: must name a tar of an OCI layout (plain, gzip or zstd), as `skopeo copy … oci-archive:FILE` writes it';
    const reader = await openArchive(
      file,
      description,
      { what, pipe: 'podman save --format oci-archive IMAGE | nixoci inspect oci-archive:-' },
      signal,
    );
    let entries;
    try {
      entries = await scanTar(
        reader,
        (name, size, head) => {
          // A header may claim any size: reading such an index.json whole would exhaust the memory.
          if (name === 'index.json' && size > MAX_CONFIG)
            throw invalidImage(description, `index.json is larger than ${MAX_CONFIG >> 20} MiB`);
          return (
            name === 'index.json' ||
            (name.startsWith('blobs/sha256/') && size <= MAX_CONFIG && head[0] === 0x7b) /* { */
          );
        },
        description,
        what,
      );
    } finally {
      await reader.close();
    }
    const files = new Map(entries.map((e) => [e.name, e]));
    if (!files.has('index.json')) {
      if (files.has('manifest.json'))
        throw new NixociError(
          'IMAGE_INVALID',
          `read ${description}: it is a docker-archive (manifest.json, no index.json), not an OCI archive`,
          { hint: 'read it as docker-archive:FILE' },
        );
      throw invalidImage(description, 'no index.json: not an OCI archive');
    }
    return readLayout(description, tag, o, {
      index: async () => files.get('index.json')!.body!,
      blob: async (d, what) => {
        const e = files.get(`blobs/sha256/${digestHex(d)}`);
        if (!e) throw invalidImage(description, `${what} ${d} is missing`);
        if (!e.body || e.size > (what === 'config' ? MAX_CONFIG : MAX_MANIFEST))
          throw invalidImage(description, `${what} ${d} is not a JSON document of a few MiB`);
        return e.body;
      },
    });
  });
}
