import cliProgress from 'cli-progress';
import type { ProgressEvent } from '../image/target.js';
import type { Layer, LayerProgress } from '../layer/layer.js';
import type { PlannedLayer } from '../layer/plan.js';
import { humanSize, STOP_SIGNALS } from './output.js';

/**
 * Progress on a terminal: one line per layer being read, with bytes and rate, under an overall
 * line. Not drawn when stderr is not a TTY, on TERM=dumb, and with --quiet / --verbose (a CI log
 * gets a status line now and then instead: src/cli/status-lines.ts).
 */
export class Progress {
  private readonly multi: cliProgress.MultiBar;
  private readonly overall: cliProgress.SingleBar;
  private readonly bars = new Map<Layer, { bar: cliProgress.SingleBar; start: number; done: number }>();
  /** Planned layers read at least once: a second destination reads them again, and counts once. */
  private readonly layersDone = new Set<PlannedLayer>();
  private bytes = 0;
  /** Layers a destination already holds (an engine's load omits them), and their tar bytes. */
  private held = 0;
  private heldBytes = 0;
  private readonly started = Date.now();

  constructor(stream: NodeJS.WritableStream, totalLayers: number) {
    this.multi = new cliProgress.MultiBar(
      {
        stream: stream as NodeJS.WriteStream,
        clearOnComplete: true,
        hideCursor: true,
        forceRedraw: false,
        // the width is read at every redraw: a resized terminal gets lines that fit it
        format: (_options, params, payload: { label: string; detail: string }) =>
          progressLine(
            payload.label,
            params.progress,
            payload.detail,
            (stream as NodeJS.WriteStream).columns,
          ),
      },
      cliProgress.Presets.legacy,
    );
    this.overall = this.multi.create(Math.max(1, totalLayers), 0, { label: 'layers read', detail: '' });
    // The first signal clears the bars at once: the winding down may take a while, and a second
    // signal meets Node's default, which ends the process without giving the terminal back (its
    // cursor hidden, its line wrapping off).
    for (const s of STOP_SIGNALS) process.once(s, this.stop);
  }

  readonly onLayerProgress = (e: LayerProgress): void => {
    // a layer still read while the run winds down would draw the bars (and hide the cursor) again
    if (this.stopped) return;
    if (e.phase === 'start') {
      const label = layerName(e.layer);
      const bar = this.multi.create(Math.max(1, e.total), 0, { label, detail: '' });
      this.bars.set(e.layer, { bar, start: Date.now(), done: 0 });
      return;
    }
    const b = this.bars.get(e.layer);
    if (!b) return;
    if (e.phase === 'bytes') {
      b.done += e.bytes;
      this.bytes += e.bytes;
      const secs = Math.max(0.001, (Date.now() - b.start) / 1000);
      // a worker's layer is counted against its NAR size, which its tar may pass by a little
      b.bar.update(b.done, {
        detail: `${humanSize(b.done)}/${humanSize(Math.max(b.done, e.total))} ${humanSize(b.done / secs)}/s`,
      });
      this.updateOverall();
    } else {
      this.multi.remove(b.bar);
      this.bars.delete(e.layer);
      this.layersDone.add(e.layer.planned);
      this.updateOverall();
    }
  };

  /** A destination's events: a layer it already holds is done, though it is never read. */
  readonly onTargetProgress = (e: ProgressEvent): void => {
    if (this.stopped || e.kind !== 'layer-done' || e.action !== 'omitted' || !e.layer) return;
    if (this.layersDone.has(e.layer.planned)) return;
    this.layersDone.add(e.layer.planned);
    this.held++;
    this.heldBytes += e.layer.tarSize();
    this.updateOverall();
  };

  private updateOverall(): void {
    const secs = Math.max(0.001, (Date.now() - this.started) / 1000);
    const held = this.held > 0 ? `, ${this.held} (${humanSize(this.heldBytes)}) already there` : '';
    this.overall.update(this.layersDone.size, {
      detail: `${this.layersDone.size} done${held}, ${humanSize(this.bytes)} read, ${humanSize(this.bytes / secs)}/s`,
    });
  }

  /**
   * The run is done: the finished state is drawn once before the bars are cleared, so that the
   * last frame a terminal (or its recording) showed is not one from before the last layers counted.
   */
  finish(): void {
    if (this.stopped) return;
    this.updateOverall();
    this.multi.update();
    this.stop();
  }

  private stopped = false;

  /** Clears the bars (once; later calls do nothing). */
  readonly stop = (): void => {
    if (this.stopped) return;
    this.stopped = true;
    for (const s of STOP_SIGNALS) process.off(s, this.stop);
    this.multi.stop();
  };
}

const LABEL = 28;
const BAR = 24;

/**
 * One line of at most `columns` characters (80 when the terminal does not say, as cli-progress
 * assumes): the terminal cuts what is longer, and the end of the line is the bytes and the rate.
 * So the bar narrows first, down to 8, then goes, then the label narrows (a cut one ends in `…`),
 * down to 6, then goes too.
 */
function progressLine(label: string, progress: number, detail: string, columns = 0): string {
  const width = columns > 0 ? columns : 80;
  const bar = Math.min(BAR, width - LABEL - detail.length - 4);
  if (bar >= 8) {
    const filled = Math.round(progress * bar);
    return `${fit(label, LABEL)} [${'#'.repeat(filled)}${'.'.repeat(bar - filled)}] ${detail}`;
  }
  const room = Math.min(LABEL, width - detail.length - 1);
  return room >= 6 ? `${fit(label, room)} ${detail}` : detail;
}

function fit(s: string, width: number): string {
  return s.length <= width ? s.padEnd(width) : `${s.slice(0, width - 1)}…`;
}

function layerName(layer: Layer): string {
  const p = layer.planned.storePaths;
  if (p.length === 0) return 'customisation';
  const name = p[0]!.slice(p[0]!.lastIndexOf('/') + 34);
  return p.length > 1 ? `${name} +${p.length - 1}` : name;
}
