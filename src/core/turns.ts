import pLimit from 'p-limit';
import { abortError } from './errors.js';

/** Gives a turn back; calling it again does nothing. */
export type GiveBack = () => void;
/** Waits for a turn; rejects with an AbortError if `signal` has fired by the time it comes. */
export type TakeTurn = (signal?: AbortSignal) => Promise<GiveBack>;

/**
 * At most `n` turns out at a time. Unlike running a function under p-limit, a turn is given back
 * whenever its holder is done with the scarce part (a layer worker), which may be well before the
 * operation that took it ends (the upload still waiting for the registry's answer).
 */
export function turns(n: number): TakeTurn {
  const limit = pLimit(n);
  return (signal) =>
    new Promise<GiveBack>((grant, reject) => {
      void limit(
        () =>
          new Promise<void>((release) => {
            let out = true;
            const give = (): void => {
              if (out) release();
              out = false;
            };
            if (!signal?.aborted) return grant(give);
            give();
            reject(abortError());
          }),
      );
    });
}
