import { NixociError } from '../core/errors.js';

export interface RetryPolicy {
  /** Total attempts, the first included. */
  readonly attempts: number;
  readonly baseMs: number;
  readonly maxMs: number;
  /** A longer Retry-After is capped to this. */
  readonly maxRetryAfterMs: number;
  /** Told of every retry before its wait (for counters and --verbose; never given secrets). */
  readonly onRetry?: (e: RetryEvent) => void;
}

export interface RetryEvent {
  /** The attempt that failed (1 for the first). */
  readonly attempt: number;
  /** `503`, `429`, `connection`, …: what made it worth another try. */
  readonly reason: string;
  readonly delayMs: number;
  /** The exchange that failed, `METHOD /path` (no query: it may hold an upload's state). */
  readonly request: string;
}

/** 408 Request Timeout, 429 Too Many Requests and server errors are worth another try. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

/**
 * Exponential backoff with "equal jitter": half the delay fixed, half random, so concurrent
 * uploads that failed together do not retry in lockstep but still wait at least half.
 */
export function backoffDelay(attempt: number, p: RetryPolicy): number {
  const d = Math.min(p.maxMs, p.baseMs * 2 ** (attempt - 1));
  return d / 2 + Math.random() * (d / 2);
}

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, p: RetryPolicy, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const s = header.trim();
  let ms: number;
  if (/^\d+$/.test(s)) ms = Number(s) * 1000;
  else {
    const t = Date.parse(s);
    if (Number.isNaN(t)) return undefined;
    ms = Math.max(0, t - now);
  }
  return Math.min(ms, p.maxRetryAfterMs);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new NixociError('ABORTED', 'aborted'));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new NixociError('ABORTED', 'aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
