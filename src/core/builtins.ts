import { createRequire } from 'node:module';

/**
 * Node built-ins that only some runs need, loaded on first use. Each costs start-up time (here:
 * tls + https ~2 ms, child_process, zlib, worker_threads and v8 ~1 ms each) on every run that
 * imports it, and an inner-loop run is mostly start-up: a load with --graph spawns nothing, makes
 * no TLS connection, compresses nothing and starts no worker.
 */
const load = createRequire(import.meta.url);

function lazy<T>(name: string): () => T {
  let m: T | undefined;
  return () => (m ??= load(name) as T);
}

export const childProcess = lazy<typeof import('node:child_process')>('node:child_process');
export const http = lazy<typeof import('node:http')>('node:http');
export const https = lazy<typeof import('node:https')>('node:https');
export const readline = lazy<typeof import('node:readline')>('node:readline');
export const tls = lazy<typeof import('node:tls')>('node:tls');
export const v8 = lazy<typeof import('node:v8')>('node:v8');
export const workerThreads = lazy<typeof import('node:worker_threads')>('node:worker_threads');
export const zlib = lazy<typeof import('node:zlib')>('node:zlib');
