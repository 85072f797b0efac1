import { readFileSync } from 'node:fs';
import type { SecureContext } from 'node:tls';
import { tls } from './builtins.js';
import { reason } from './errors.js';

/**
 * bin/nixoci.js starts Node without NODE_EXTRA_CA_CERTS (Node 20 parses those certificates at
 * start-up, ~35 ms on every run) and passes the file on under this name. The TLS connections nixoci
 * makes trust it here, as Node would have; `node bin/nixoci.js` leaves the variable to Node and
 * this one unset.
 */
export const DEFERRED_EXTRA_CA_ENV = 'NIXOCI_DEFERRED_EXTRA_CA_CERTS';

let deferred: { file: string; pem: string | null } | undefined;

/**
 * The PEM text of the deferred NODE_EXTRA_CA_CERTS file, read on first use; null when there is none.
 * An unreadable file is ignored with a warning, as Node does.
 */
export function deferredExtraCas(env: NodeJS.ProcessEnv = process.env): string | null {
  const file = env[DEFERRED_EXTRA_CA_ENV];
  if (!file) return null;
  if (deferred?.file === file) return deferred.pem;
  let pem: string | null = null;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (e) {
    process.stderr.write(
      `nixoci: warning: ignoring extra certs from ${file} (NODE_EXTRA_CA_CERTS): ${reason(e)}\n`,
    );
  }
  deferred = { file, pem };
  return pem;
}

/**
 * TLS options that trust Node's default CAs plus `extra` (PEM text, e.g. --ca-file) and the
 * deferred NODE_EXTRA_CA_CERTS, with the `client` certificate if any; undefined when there is no CA
 * to add and no client certificate, so Node's default applies.
 * A secure context built from Node's default store keeps whatever that store is (bundled, or the
 * system's with --use-openssl-ca); the CA list is the fallback if Node ever hides `addCACert`.
 */
export function tlsTrust(
  extra: readonly string[] = [],
  client: { cert?: Buffer; key?: Buffer } = {},
  env: NodeJS.ProcessEnv = process.env,
): { secureContext: SecureContext } | { ca: string[] } | undefined {
  const more = deferredExtraCas(env);
  const pems = more ? [...extra, more] : [...extra];
  if (pems.length === 0 && !client.cert) return undefined;
  const secureContext = tls().createSecureContext(client);
  const native = (secureContext as { context?: { addCACert?: (pem: string) => void } }).context;
  if (typeof native?.addCACert !== 'function') return { ca: [...tls().rootCertificates, ...pems] };
  for (const pem of pems) native.addCACert(pem);
  return { secureContext };
}
