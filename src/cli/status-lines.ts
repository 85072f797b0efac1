import type { ProgressEvent } from '../image/target.js';
import type { LayerProgress } from '../layer/layer.js';
import type { PlannedLayer } from '../layer/plan.js';
import { NixociError } from '../core/errors.js';
import { humanSize } from './output.js';

/** Seconds between status lines by default: well inside CI services' silence limits (10 min). */
export const DEFAULT_STATUS_INTERVAL = 30;

/**
 * Where progress bars are not drawn (standard error is a file or a pipe: a CI log; TERM=dumb;
 * --verbose), a long run still says how far it is: one line every `interval` seconds while layers
 * are being read, none for a run shorter than that. A CI service that ends a job after minutes
 * without output (CircleCI, Travis CI: 10) would otherwise end a cold push of a big closure.
 */
export class StatusLines {
  private readonly layersDone = new Set<PlannedLayer>();
  private bytes = 0;
  /** Layers a destination already holds (an engine's load omits them), and their tar bytes. */
  private held = 0;
  private heldBytes = 0;
  private told = false;
  private lastBytes = 0;
  private readonly started = Date.now();
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly write: (line: string) => void,
    private readonly totalLayers: number,
    interval: number,
  ) {
    if (interval > 0) {
      this.timer = setInterval(() => this.tell(), interval * 1000);
      this.timer.unref();
    }
  }

  readonly onLayerProgress = (e: LayerProgress): void => {
    if (e.phase === 'bytes') this.bytes += e.bytes;
    else if (e.phase === 'done') this.layersDone.add(e.layer.planned);
  };

  /** A destination's events: a layer it already holds is done, though it is never read. */
  readonly onTargetProgress = (e: ProgressEvent): void => {
    if (e.kind !== 'layer-done' || e.action !== 'omitted' || !e.layer) return;
    if (this.layersDone.has(e.layer.planned)) return;
    this.layersDone.add(e.layer.planned);
    this.held++;
    this.heldBytes += e.layer.tarSize();
  };

  private tell(done = false): void {
    // nothing read since the last line (an upload or an engine's import that takes its time): say
    // what it waits for, so that it does not read as a stall
    const secs = Math.round((Date.now() - this.started) / 1000);
    const n = this.layersDone.size;
    const moved = this.bytes !== this.lastBytes;
    this.lastBytes = this.bytes;
    this.told = true;
    const held = this.held > 0 ? ` (${this.held} already there, ${humanSize(this.heldBytes)})` : '';
    this.write(
      `nixoci: ${n} of ${this.totalLayers} layer${this.totalLayers === 1 ? '' : 's'} made${held}, ` +
        `${humanSize(this.bytes)} tarred${moved || done ? '' : ', waiting for the destination'} (${secs} s)`,
    );
  }

  /** The run is done: a log that had status lines gets a last one with the finished count. */
  finish(): void {
    this.stop();
    if (this.told) this.tell(true);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

/** setInterval's longest delay (2^31-1 ms, ~24.8 days); a longer one is taken as 1 ms by Node. */
const MAX_STATUS_INTERVAL = Math.floor(0x7fffffff / 1000);

/** NIXOCI_STATUS_INTERVAL: seconds between status lines (0: none), checked like a flag. */
export function statusInterval(command: string, value = process.env.NIXOCI_STATUS_INTERVAL): number {
  if (value === undefined || value === '') return DEFAULT_STATUS_INTERVAL;
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(n))
    throw new NixociError('USAGE', `nixoci ${command}: NIXOCI_STATUS_INTERVAL=${value}: expected seconds`, {
      hint: 'give a number of seconds between status lines, e.g. NIXOCI_STATUS_INTERVAL=30 (0: none)',
    });
  // a huge value means "never" to the user; Node would turn it into a line every millisecond
  return Math.min(n, MAX_STATUS_INTERVAL);
}
