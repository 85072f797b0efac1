/**
 * Fixed-size buffers of one thread, handed out and taken back. A buffer comes back only from a
 * consumer that is done with it for good; one that never comes back (posted to another thread,
 * held by an HTTP body) is left to the garbage collector, and `give` ignores buffers it did not
 * hand out (a subarray, a copy).
 */
export class BufferPool {
  private readonly spare: Buffer[] = [];
  private readonly out = new WeakSet<Buffer>();

  constructor(
    private readonly size: number,
    private readonly keep: number,
  ) {}

  take(): Buffer {
    const b = this.spare.pop() ?? Buffer.allocUnsafe(this.size);
    this.out.add(b);
    return b;
  }

  give(b: Buffer): void {
    if (this.out.has(b) && this.spare.length < this.keep) {
      this.out.delete(b);
      this.spare.push(b);
    }
  }
}
