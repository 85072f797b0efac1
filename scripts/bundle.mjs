// Bundles the CLI and the layer worker into single files (dist/nixoci.mjs, dist/layer-worker.js):
// loading one file instead of ~80 modules halves the start-up time, which matters for the
// inner loop (a no-change push is mostly Node start-up). zstd-napi stays external (native addon).
import { build } from 'esbuild';

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['zstd-napi'],
  // Bundled CommonJS dependencies call require(); give ESM output one.
  banner: {
    js: "import { createRequire as __nixociRequire } from 'node:module'; const require = __nixociRequire(import.meta.url);",
  },
  logLevel: 'warning',
  legalComments: 'none',
};

await build({ ...common, entryPoints: ['src/cli/main.ts'], outfile: 'dist/nixoci.mjs' });
await build({ ...common, entryPoints: ['src/layer/layer-worker.ts'], outfile: 'dist/layer-worker.js' });
