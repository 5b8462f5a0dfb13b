// Events kept for operators (address conflicts, backends lost, ejected, drained …): the last
// N in memory, numbered, readable at GET /api/v1/events (?since=SEQ for what is new).

type Severity = 'info' | 'warn' | 'error';

interface TetherEvent {
  readonly seq: number;
  /** ISO 8601 time. */
  readonly time: string;
  readonly type: string;
  readonly severity: Severity;
  readonly message: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

export class EventLog {
  private readonly events: TetherEvent[] = [];
  private seq = 0;

  constructor(private readonly capacity = 1_000, private readonly now: () => number = Date.now) {}

  add(type: string, severity: Severity, message: string, fields: Record<string, unknown> = {}): TetherEvent {
    const e: TetherEvent = { seq: ++this.seq, time: new Date(this.now()).toISOString(), type, severity, message, fields };
    this.events.push(e);
    if (this.events.length > this.capacity) this.events.splice(0, this.events.length - this.capacity);
    return e;
  }

  /** Events with seq above `since`, oldest first. */
  list(since = 0): TetherEvent[] {
    return this.events.filter((e) => e.seq > since);
  }

  get lastSeq(): number {
    return this.seq;
  }
}
