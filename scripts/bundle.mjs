// Bundles the CLI and the layer worker into single files (dist/nixoci.cjs, dist/layer-worker.js):
// loading one file instead of ~80 modules halves the start-up time, which matters for the
// inner loop (a no-change push is mostly Node start-up). zstd-napi stays external (native addon).
//
// The CLI bundle is CommonJS so that bin/nixoci.js can compile it with a V8 code cache (vm.Script
// takes cached data; ES modules cannot without an experimental flag): see docs/design-choices.md.
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';

const { version } = JSON.parse(readFileSync('package.json', 'utf8'));

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  external: ['zstd-napi'],
  logLevel: 'warning',
  legalComments: 'none',
  minifyWhitespace: true,
  minifySyntax: true,
  charset: 'ascii',
};

rmSync('dist/nixoci.mjs', { force: true }); // the ESM bundle of earlier builds
await build({
  ...common,
  format: 'cjs',
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/nixoci.cjs',
  // The sources locate their neighbours (the layer worker, zstd-napi) from import.meta.url.
  define: { 'import.meta.url': '__nixociModuleUrl', __NIXOCI_VERSION__: JSON.stringify(version) },
  banner: { js: "const __nixociModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
});
await build({
  ...common,
  format: 'esm',
  entryPoints: ['src/layer/layer-worker.ts'],
  outfile: 'dist/layer-worker.js',
  // Bundled CommonJS dependencies call require(); give ESM output one.
  banner: {
    js: "import { createRequire as __nixociRequire } from 'node:module'; const require = __nixociRequire(import.meta.url);",
  },
});
