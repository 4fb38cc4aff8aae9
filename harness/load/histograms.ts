/**
 * Latency per phase of an agent session, in HdrHistogram (hdr-histogram-js): one histogram per phase
 * for the whole run, and one per phase per one-second window for the latency-over-time chart.
 * Values are recorded in microseconds (the library records integers) and reported in milliseconds.
 */
import { build, type Histogram } from 'hdr-histogram-js';

/** The phases of an agent session, in the order they happen. */
export const PHASES = ['tcp', 'connect', 'tls', 'firstByte', 'upload', 'keepalive'] as const;
export type Phase = (typeof PHASES)[number];

/** What each phase measures (the JSON and HTML say it). */
export const PHASE_MEANING: Record<Phase, string> = {
  tcp: 'TCP connect to the proxy',
  connect: 'CONNECT sent until the proxy answered 2xx',
  tls: 'TLS handshake with the origin inside the tunnel',
  firstByte: 'request sent until the first byte of the answer',
  upload: 'a report or upload POSTed until its answer was complete',
  keepalive: "a held tunnel's keep-alive until its answer came back",
};

export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** One second of the run: the p50/p99 of each phase that recorded in it, in ms. */
export interface Window {
  /** Seconds since the run started (the window's start). */
  t: number;
  /** Agents with a session open at the window's end. */
  agents: number;
  phases: Partial<Record<Phase, { count: number; p50: number; p99: number }>>;
  errors: number;
}

/** 60 s in µs is the highest value tracked exactly; the histograms resize beyond it. */
const HIGHEST_US = 60_000_000;

function histogram(): Histogram {
  return build({ numberOfSignificantValueDigits: 3, highestTrackableValue: HIGHEST_US, autoResize: true });
}

const ms = (us: number) => Math.round(us / 10) / 100;

/**
 * A percentile is the highest value equivalent to it at 3 significant digits, which can lie just
 * above the exact maximum: it is capped there.
 */
function percentiles(h: Histogram): Percentiles {
  const at = (p: number) => ms(Math.min(h.getValueAtPercentile(p), h.maxValue));
  return { count: h.totalCount, p50: at(50), p90: at(90), p99: at(99), max: ms(h.maxValue) };
}

export class PhaseRecorder {
  private readonly total = new Map<Phase, Histogram>();
  private current = new Map<Phase, Histogram>();
  private currentErrors = 0;
  private windowStart: number;
  readonly windows: Window[] = [];

  constructor(
    private readonly t0 = performance.now(),
    private readonly agentsOpen: () => number = () => 0,
  ) {
    this.windowStart = t0;
  }

  record(phase: Phase, millis: number): void {
    this.roll();
    const us = Math.max(1, Math.round(millis * 1000));
    for (const map of [this.total, this.current]) {
      let h = map.get(phase);
      if (!h) {
        h = histogram();
        map.set(phase, h);
      }
      h.recordValue(us);
    }
  }

  /** An error in the current window (the errors themselves are counted by class elsewhere). */
  error(): void {
    this.roll();
    this.currentErrors++;
  }

  /** Closes the windows that ended before now (empty seconds included, so the chart has no gaps). */
  roll(now = performance.now()): void {
    while (now - this.windowStart >= 1000) {
      const phases: Window['phases'] = {};
      for (const [p, h] of this.current) {
        const { count, p50, p99 } = percentiles(h);
        phases[p] = { count, p50, p99 };
        h.destroy();
      }
      this.windows.push({
        t: Math.round((this.windowStart - this.t0) / 1000),
        agents: this.agentsOpen(),
        phases,
        errors: this.currentErrors,
      });
      this.current = new Map();
      this.currentErrors = 0;
      this.windowStart += 1000;
    }
  }

  /** Percentiles per phase over the whole run (phases that recorded nothing are absent). */
  summary(): Partial<Record<Phase, Percentiles>> {
    const out: Partial<Record<Phase, Percentiles>> = {};
    for (const p of PHASES) {
      const h = this.total.get(p);
      if (h) out[p] = percentiles(h);
    }
    return out;
  }

  destroy(): void {
    for (const h of [...this.total.values(), ...this.current.values()]) h.destroy();
    this.total.clear();
    this.current.clear();
  }
}
