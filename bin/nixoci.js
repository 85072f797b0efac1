#!/usr/bin/env node
// The bundled build (npm run build) starts fastest; the per-module build is the fallback.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/nixoci.mjs', import.meta.url);
const { main } = await import(existsSync(bundle) ? bundle.href : '../dist/cli/main.js');
process.exitCode = await main(process.argv.slice(2));
