/**
 * undici, loaded on the first registry request: with the Node modules it pulls in (http2, tls,
 * its WebAssembly HTTP parser) it is a third of the CLI's start-up, which `build` and `load` never
 * need. In the bundle, this dynamic import initialises the bundled copy lazily.
 */
const load = () => import('undici');
let loading: ReturnType<typeof load> | undefined;

export function undici(): ReturnType<typeof load> {
  loading ??= load();
  return loading;
}
