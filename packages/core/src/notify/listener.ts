import type { Driver, IncomingNotification, Subscription } from '../driver.js';
import type { BusRuntime } from '../runtime.js';
import { TransportClosed, UnsupportedFeature } from '../errors.js';
import { Limiter } from '../limiter.js';
import { PRIORITIES, type Context, type Priority } from '../message.js';
import { validateTarget, type Target, type TargetFields } from '../target.js';
import { channels, finish, type NotifyDispatchEvent } from '../diagnostics.js';
import { isThenable } from '../thenable.js';

/** Returned by an endpoint method to hand the notification back for redelivery. */
export const REQUEUE = 'requeue';
export type NotificationResult = typeof REQUEUE | void | undefined;

export interface NotificationMetadata {
  readonly messageId: string;
  readonly timestamp: string;
  /** Possibly delivered before (delivery is at-least-once): handle it idempotently, by messageId. */
  readonly redelivered: boolean;
}

/** A pattern: a RegExp, or a string matched like Python's `re.match` (anchored at the start). */
export type FilterPattern = RegExp | string;

/** oslo's NotificationFilter: every given rule must match for the endpoint to see a message. */
export interface FilterRule {
  readonly publisherId?: FilterPattern | undefined;
  readonly eventType?: FilterPattern | undefined;
  readonly context?: Readonly<Record<string, FilterPattern>> | undefined;
  readonly metadata?: Readonly<Record<string, FilterPattern>> | undefined;
}

type Handler = (ctx: Context, publisherId: string, eventType: string, payload: unknown, metadata: NotificationMetadata) => unknown;

/** Methods named after priorities receive the notifications of that priority. */
export type NotificationEndpoint = { readonly filterRule?: FilterRule | undefined } & Partial<Record<Priority, Handler>>;

export interface BatchMessage {
  readonly ctxt: Context;
  readonly publisherId: string;
  readonly eventType: string;
  readonly payload: unknown;
  readonly metadata: NotificationMetadata;
}
type BatchHandler = (messages: readonly BatchMessage[]) => unknown;
export type BatchNotificationEndpoint = { readonly filterRule?: FilterRule | undefined } & Partial<Record<Priority, BatchHandler>>;

export interface NotificationListenerOptions {
  /** Listeners in the same pool share the work; each pool gets every notification. */
  readonly pool?: string | undefined;
  /** Honour REQUEUE (and requeue on endpoint errors); otherwise such messages are acked. */
  readonly allowRequeue?: boolean | undefined;
  readonly maxConcurrency?: number | undefined;
}

export interface BatchOptions extends NotificationListenerOptions {
  /** Dispatch when this many messages are buffered... */
  readonly batchSize: number;
  /** ...or when the oldest buffered one has waited this long (ms). */
  readonly batchTimeout: number;
}

function compile(p: FilterPattern): RegExp {
  return typeof p === 'string' ? new RegExp(`^(?:${p})`) : p;
}

function matches(p: FilterPattern | undefined, value: unknown): boolean {
  return p === undefined || (typeof value === 'string' && compile(p).test(value));
}

function matchesAll(rules: Readonly<Record<string, FilterPattern>> | undefined, values: Readonly<Record<string, unknown>>): boolean {
  return Object.entries(rules ?? {}).every(([k, p]) => matches(p, values[k]));
}

export function filterMatches(rule: FilterRule | undefined, m: BatchMessage): boolean {
  if (!rule) return true;
  return (
    matches(rule.publisherId, m.publisherId) &&
    matches(rule.eventType, m.eventType) &&
    matchesAll(rule.context, m.ctxt) &&
    matchesAll(rule.metadata, m.metadata as unknown as Record<string, unknown>)
  );
}

/** One delivered notification with its priority, ready for endpoints. */
interface Received {
  readonly incoming: IncomingNotification;
  readonly priority: Priority;
  readonly message: BatchMessage;
  /** Its diagnostics event, when someone subscribed. */
  readonly event?: NotifyDispatchEvent | undefined;
}

/**
 * oslo's NotificationListener: consumes the targets' topics on the transport the router maps
 * `notify` to, calls endpoint methods by priority, then acks (or requeues).
 */
abstract class ListenerBase<E extends { readonly filterRule?: FilterRule | undefined }> {
  readonly targets: readonly Target[];
  protected readonly limiter: Limiter;
  private subscriptions: Subscription[] = [];
  private state: 'new' | 'running' | 'stopped' = 'new';

  constructor(
    protected readonly runtime: BusRuntime,
    targets: readonly TargetFields[],
    protected readonly endpoints: readonly E[],
    protected readonly options: NotificationListenerOptions,
  ) {
    if (targets.length === 0) throw new TypeError('a notification listener needs at least one target');
    this.targets = targets.map((t) => validateTarget(t, 'listener'));
    this.limiter = new Limiter(options.maxConcurrency ?? runtime.rpc.maxConcurrency);
  }

  /** Priorities some endpoint has a method for. */
  get priorities(): Priority[] {
    return PRIORITIES.filter((p) => this.endpoints.some((e) => typeof (e as Record<string, unknown>)[p] === 'function'));
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new TransportClosed('a notification listener starts once');
    const byDriver = new Map<Driver, Target[]>();
    for (const t of this.targets) {
      const d = this.runtime.transportFor(t.topic as string, 'notify');
      byDriver.set(d, [...(byDriver.get(d) ?? []), t]);
    }
    for (const driver of byDriver.keys()) {
      if (this.options.pool !== undefined && !driver.capabilities.pools) {
        throw new UnsupportedFeature('this transport does not support notification listener pools');
      }
    }
    this.state = 'running';
    for (const [driver, targets] of byDriver) {
      this.subscriptions.push(
        await driver.listenForNotifications(targets, (m) => this.receive(driver, m), {
          pool: this.options.pool,
          priorities: this.priorities,
        }),
      );
    }
  }

  /** Stop consuming; finish (and ack) what was delivered. */
  async stop(): Promise<void> {
    this.state = 'stopped';
    await Promise.allSettled(this.subscriptions.map((s) => s.stop()));
    this.subscriptions = [];
    await this.flush();
    await this.limiter.drain();
  }

  /** Returns the promise of the notification's processing, so the driver can bound its backlog. */
  private receive(driver: Driver, incoming: IncomingNotification): Promise<void> {
    const n = incoming.notification;
    const ctxt = this.runtime.serializer.deserializeContext({ ...n.context });
    let event: NotifyDispatchEvent | undefined;
    if (channels.notifyDispatch.active()) {
      const ref = this.runtime.refOf(driver);
      event = { transport: ref.transport, scheme: ref.scheme, pattern: 'notify', notification: n, topic: incoming.topic, pool: this.options.pool, trace: n.trace, bus: this.runtime.bus, startedAt: performance.now(), durationMs: undefined, error: undefined, bind: undefined, outcome: undefined };
      channels.notifyDispatch.start.publish(event);
    }
    const received: Received = {
      incoming,
      event,
      priority: n.priority,
      message: {
        ctxt,
        publisherId: n.publisherId,
        eventType: n.eventType,
        payload: this.runtime.serializer.deserializeEntity(ctxt, n.payload),
        metadata: { messageId: n.messageId, timestamp: n.timestamp, redelivered: incoming.redelivered ?? false },
      },
    };
    const done = this.accept(received, driver.capabilities.requeue && this.options.allowRequeue === true);
    return event ? done.then(() => finish(channels.notifyDispatch, event)) : done;
  }

  /** Take a notification; resolves once it has been handled and settled (never rejects). */
  protected abstract accept(r: Received, canRequeue: boolean): Promise<void>;
  protected async flush(): Promise<void> {}

  /**
   * Call `invoke` for each endpoint with a method for `priority`; stop at the first REQUEUE (an
   * endpoint's error counts as one). An endpoint that returns no promise is not awaited: a promise
   * and a microtask turn per notification and endpoint showed in a busy listener's profile.
   */
  protected dispatch(priority: Priority, invoke: (endpoint: E) => unknown, from = 0): NotificationResult | Promise<NotificationResult> {
    for (let i = from; i < this.endpoints.length; i++) {
      const endpoint = this.endpoints[i] as E;
      if (typeof (endpoint as Record<string, unknown>)[priority] !== 'function') continue;
      let out: unknown;
      try {
        out = invoke(endpoint);
      } catch (err) {
        return this.raised(err, priority);
      }
      if (isThenable(out)) {
        return Promise.resolve(out).then(
          (v) => (v === REQUEUE ? REQUEUE : this.dispatch(priority, invoke, i + 1)),
          (err: unknown) => this.raised(err, priority),
        );
      }
      if (out === REQUEUE) return REQUEUE;
    }
    return undefined;
  }

  private raised(err: unknown, priority: Priority): NotificationResult {
    this.runtime.logger.error({ err, priority }, 'notification endpoint raised an exception');
    return REQUEUE;
  }

  /** Ack (or requeue) each item; never rejects. */
  protected settle(items: readonly Received[], result: NotificationResult, canRequeue: boolean): Promise<void> {
    const requeue = result === REQUEUE && canRequeue;
    const one = (r: Received): Promise<void> => {
      if (r.event) r.event.outcome = requeue ? 'requeue' : 'ack';
      let settled: Promise<void>;
      try {
        settled = requeue ? r.incoming.requeue() : r.incoming.ack();
      } catch (err) {
        settled = Promise.reject(err);
      }
      return settled.catch((err: unknown) => this.runtime.logger.warn({ err }, 'could not settle a notification'));
    };
    // One item (every non-batch listener): no array and no Promise.all.
    if (items.length === 1) return one(items[0] as Received);
    return Promise.all(items.map(one)).then(() => undefined);
  }
}

export class NotificationListener extends ListenerBase<NotificationEndpoint> {
  protected accept(r: Received, canRequeue: boolean): Promise<void> {
    return this.limiter.run(() => {
      const { message: m } = r;
      const run = (): NotificationResult | Promise<NotificationResult> =>
        this.dispatch(r.priority, (e) =>
          filterMatches(e.filterRule, m) ? e[r.priority]?.(m.ctxt, m.publisherId, m.eventType, m.payload, m.metadata) : undefined,
        );
      const bind = r.event?.bind;
      const result = bind ? bind(run) : run();
      return isThenable(result) ? Promise.resolve(result).then((x) => this.settle([r], x, canRequeue)) : this.settle([r], result, canRequeue);
    });
  }
}

/** Hands endpoints lists of notifications, by priority, when `batchSize` or `batchTimeout` is reached. */
export class BatchNotificationListener extends ListenerBase<BatchNotificationEndpoint> {
  private buffer: Array<{ r: Received; canRequeue: boolean }> = [];
  /** Settles when the batch being buffered has been handled. */
  private batchDone: { promise: Promise<void>; resolve: () => void } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly batchSize: number;
  private readonly batchTimeout: number;

  constructor(runtime: BusRuntime, targets: readonly TargetFields[], endpoints: readonly BatchNotificationEndpoint[], options: BatchOptions) {
    super(runtime, targets, endpoints, options);
    if (!Number.isInteger(options.batchSize) || options.batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${options.batchSize}`);
    if (!(options.batchTimeout >= 0)) throw new RangeError(`batchTimeout must be a non-negative number of ms, got ${options.batchTimeout}`);
    this.batchSize = options.batchSize;
    this.batchTimeout = options.batchTimeout;
  }

  protected accept(r: Received, canRequeue: boolean): Promise<void> {
    this.buffer.push({ r, canRequeue });
    if (!this.batchDone) {
      let resolve!: () => void;
      const promise = new Promise<void>((res) => (resolve = res));
      this.batchDone = { promise, resolve };
    }
    const done = this.batchDone.promise;
    if (this.buffer.length >= this.batchSize) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.batchTimeout);
    return done;
  }

  protected override async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.buffer;
    this.buffer = [];
    const done = this.batchDone;
    this.batchDone = undefined;
    if (batch.length === 0) return;
    await this.limiter.run(async () => {
      for (const priority of PRIORITIES) {
        const group = batch.filter((b) => b.r.priority === priority);
        if (group.length === 0) continue;
        const result = await this.dispatch(priority, (e) => {
          const messages = group.map((b) => b.r.message).filter((m) => filterMatches(e.filterRule, m));
          return messages.length > 0 ? e[priority]?.(messages) : undefined;
        });
        await this.settle(group.map((b) => b.r), result, group.every((b) => b.canRequeue));
      }
    }).finally(() => done?.resolve());
  }
}
