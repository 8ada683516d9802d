import type { BusRuntime } from '../runtime.js';
import { messageId, osloTimestamp, uniqueId, type Context, type Notification, type Priority } from '../message.js';
import { Target, validateTarget } from '../target.js';
import { channels, finish, type NotifySendEvent } from '../diagnostics.js';
import type { Driver } from '../driver.js';

export interface NotifierOptions {
  /** Who sends, e.g. "compute.node-7". */
  readonly publisherId: string;
  /** Topics each notification goes to (default: config `notifications.topics`). */
  readonly topics?: readonly string[] | undefined;
  readonly exchange?: string | undefined;
  /** Connection retries: -1 forever, 0 none, n at most n (default: config `notifications.retry`). */
  readonly retry?: number | undefined;
}

/** oslo's Notifier: one method per priority, each sending to every configured topic. */
export class Notifier {
  readonly publisherId: string;
  readonly targets: readonly Target[];

  constructor(
    private readonly runtime: BusRuntime,
    private readonly options: NotifierOptions,
  ) {
    if (typeof options.publisherId !== 'string' || options.publisherId === '') {
      throw new TypeError('Notifier needs a publisherId, e.g. "compute.node-7"');
    }
    this.publisherId = options.publisherId;
    this.targets = (options.topics ?? runtime.notifications.topics).map((topic) =>
      validateTarget({ topic, exchange: options.exchange }, 'notifier'),
    );
  }

  prepare(overrides: Partial<NotifierOptions>): Notifier {
    const merged: Record<string, unknown> = { ...this.options };
    for (const [k, v] of Object.entries(overrides)) if (v !== undefined) merged[k] = v;
    return new Notifier(this.runtime, merged as unknown as NotifierOptions);
  }

  audit(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify('audit', ctx, eventType, payload);
  }
  debug(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify('debug', ctx, eventType, payload);
  }
  info(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify('info', ctx, eventType, payload);
  }
  warn(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify('warn', ctx, eventType, payload);
  }
  error(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify('error', ctx, eventType, payload);
  }
  critical(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify('critical', ctx, eventType, payload);
  }
  sample(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify('sample', ctx, eventType, payload);
  }

  /**
   * Resolves once every topic's transport has accepted the notification. Not an async function:
   * returning the driver's promise from one cost two more microtask turns per notification.
   */
  notify(priority: Priority, ctx: Context, eventType: string, payload: unknown): Promise<void> {
    try {
      const { serializer } = this.runtime;
      const notification: Notification = {
        messageId: messageId(),
        publisherId: this.publisherId,
        eventType,
        priority,
        payload: serializer.serializeEntity(ctx, payload),
        timestamp: osloTimestamp(),
        context: serializer.serializeContext(ctx),
        uniqueId: uniqueId(),
      };
      const retry = this.options.retry ?? this.runtime.notifications.retry;
      const send = (t: Target): Promise<void> => {
        const driver = this.runtime.transportFor(t.topic as string, 'notify');
        return channels.notify.active() ? this.observed(driver, t, notification, retry) : driver.notify(t, notification, { retry });
      };
      // One topic (the usual case): no array of promises and no Promise.all per notification.
      if (this.targets.length === 1) return send(this.targets[0] as Target);
      return Promise.all(this.targets.map(send)).then(() => undefined);
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  /** The send, with diagnostics events (each topic gets its own carrier: its own span). */
  private async observed(driver: Driver, target: Target, n: Notification, retry: number | undefined): Promise<void> {
    const trace = {};
    const notification: Notification = { ...n, trace };
    const ref = this.runtime.refOf(driver);
    const event: NotifySendEvent = { transport: ref.transport, scheme: ref.scheme, pattern: 'notify', target, notification, trace, bus: this.runtime.bus, startedAt: performance.now(), durationMs: undefined, error: undefined };
    channels.notify.start.publish(event);
    try {
      await driver.notify(target, notification, { retry });
    } catch (e) {
      finish(channels.notify, event, e);
      throw e;
    }
    finish(channels.notify, event);
  }
}
