import { CallAborted, CallMonitorTimeout, ConfigError, InvalidTarget, MessagingTimeout, VersionCapError } from '../errors.js';
import { CallCancel, type Driver } from '../driver.js';
import { channels, finish, type RpcSendEvent, type TraceCarrier } from '../diagnostics.js';
import type { BusRuntime } from '../runtime.js';
import { jsonSerializer } from '../serializer.js';
import { deserializeFailure, uniqueId, type Context, type RpcRequest } from '../message.js';
import { Target, validateTarget, versionIsCompatible, type TargetFields } from '../target.js';

export interface PrepareOptions extends TargetFields {
  /** Overall call timeout, ms. */
  readonly timeout?: number | undefined;
  /** Fail a call early when the server sends nothing for this long (ms); 0 disables. */
  readonly callMonitorTimeout?: number | undefined;
  /** Highest version this client may send. */
  readonly versionCap?: string | undefined;
  /** Connection retries: -1 forever, 0 none, n at most n. */
  readonly retry?: number | undefined;
}

export interface CallOptions {
  readonly timeout?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

export type RpcClientOptions = Omit<PrepareOptions, keyof TargetFields>;

const noop = (): void => undefined;

/** A call timeout is a positive, finite number of ms: 0 would time out at once, and there is no "never". */
function checkCallTimeout(v: unknown, what: string): void {
  if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) {
    const [source, key] = what.split(' option ') as [string, string];
    throw new ConfigError([`${key}: must be a positive number of ms (a call always has a timeout; 0 would time out at once): value was ${String(v)}`], `${source} options`);
  }
}


/** oslo's RPCClient: `call` waits for the result, `cast` does not. */
export class RpcClient {
  readonly target: Target;
  readonly options: Readonly<RpcClientOptions>;
  /** The target checked for calls, once (targets are immutable). */
  private callTarget: Target | undefined;

  constructor(
    private readonly runtime: BusRuntime,
    target: TargetFields,
    options: RpcClientOptions = {},
  ) {
    this.target = validateTarget(target, 'rpc-client');
    this.options = { ...options };
    checkCallTimeout(options.timeout, 'RpcClient option timeout');
    const monitor = options.callMonitorTimeout;
    if (monitor !== undefined && !(typeof monitor === 'number' && Number.isFinite(monitor) && monitor >= 0)) {
      throw new ConfigError([`callMonitorTimeout: must be a non-negative number of ms (0: no call monitoring): value was ${String(monitor)}`], 'RpcClient options');
    }
    if (options.versionCap !== undefined) validateTarget({ version: options.versionCap }, 'endpoint');
  }

  /** A client with some target fields or options replaced (the original is unchanged). */
  prepare(overrides: PrepareOptions): RpcClient {
    const { timeout, callMonitorTimeout, versionCap, retry, ...target } = overrides;
    const opts: RpcClientOptions = { ...this.options };
    for (const [k, v] of Object.entries({ timeout, callMonitorTimeout, versionCap, retry })) {
      if (v !== undefined) (opts as Record<string, unknown>)[k] = v;
    }
    return new RpcClient(this.runtime, this.target.with(target), opts);
  }

  /** Whether a message at `version` (default: the target's) is within the version cap. */
  canSendVersion(version = this.target.version): boolean {
    const cap = this.options.versionCap;
    return cap === undefined || version === undefined || versionIsCompatible(cap, version);
  }

  /** Invoke `method` on one server and resolve with its result. */
  async call<T = unknown>(ctx: Context, method: string, args: Record<string, unknown> = {}, options: CallOptions = {}): Promise<T> {
    const target = (this.callTarget ??= validateTarget(this.target, 'rpc-call'));
    // Diagnostics only when someone subscribed: otherwise three boolean reads per call.
    const trace: TraceCarrier | undefined = channels.call.active() ? {} : undefined;
    const request = this.request(ctx, method, args, trace);
    const driver = this.runtime.transportFor(target.topic as string, 'call');
    checkCallTimeout(options.timeout, 'call option timeout');
    let event: RpcSendEvent | undefined;
    if (trace) {
      const ref = this.runtime.refOf(driver);
      event = { transport: ref.transport, scheme: ref.scheme, pattern: 'call', target, method, request, trace, bus: this.runtime.bus, startedAt: performance.now(), durationMs: undefined, error: undefined };
      channels.call.start.publish(event);
    }
    const timeoutMs = options.timeout ?? this.options.timeout ?? this.runtime.rpc.timeout;
    const monitorMs = this.options.callMonitorTimeout ?? this.runtime.rpc.callMonitorTimeout;

    const cancel = new CallCancel();
    const timer = setTimeout(
      () => cancel.cancel(new MessagingTimeout(`Timed out waiting for a reply to ${method} on ${target} after ${timeoutMs} ms`)),
      timeoutMs,
    );
    // Monitor and abort handling only when asked for: a closure per call adds up at 100k calls/s.
    let monitor: NodeJS.Timeout | undefined;
    const armMonitor = monitorMs
      ? (): void => {
          if (monitor) monitor.refresh();
          else {
            monitor = setTimeout(
              () => cancel.cancel(new CallMonitorTimeout(`No reply or heartbeat for ${method} on ${target} in ${monitorMs} ms: the server is gone`)),
              monitorMs,
            );
          }
        }
      : noop;
    const { signal } = options;
    const onCallerAbort = signal
      ? (): void => cancel.cancel(new CallAborted(`call ${method} on ${target} aborted by the caller`, { cause: signal.reason }))
      : undefined;
    if (signal && onCallerAbort) {
      if (signal.aborted) onCallerAbort();
      signal.addEventListener('abort', onCallerAbort, { once: true });
    }
    armMonitor();
    let replied = false;
    try {
      // Drivers reject with the cancel's reason once it fires (the conformance suite holds them to it).
      const reply = await driver.call(target, request, {
        timeoutMs,
        callMonitorTimeoutMs: monitorMs || undefined,
        cancel,
        onHeartbeat: armMonitor,
        retry: this.options.retry,
      });
      replied = true;
      if (reply.failure !== null) throw deserializeFailure(reply.failure);
      const result = this.runtime.serializer.deserializeEntity(ctx, reply.result) as T;
      if (event) finish(channels.call, event);
      return result;
    } catch (e) {
      // Once the reply is in, a later cancel (rabbit's "settled" that stops an unconfirmed send)
      // must not replace the remote error it carried.
      const err = replied ? e : (cancel.reason ?? e);
      if (event) finish(channels.call, event, err);
      throw err;
    } finally {
      clearTimeout(timer);
      if (monitor) clearTimeout(monitor);
      if (signal && onCallerAbort) signal.removeEventListener('abort', onCallerAbort);
    }
  }

  /**
   * Send `method` without waiting for a result: to one server, or to all with `fanout`. Not an
   * async function: without a tracer it hands back the driver's promise (the async function's
   * own promise and turn were 6 % of a busy caster's CPU).
   */
  cast(ctx: Context, method: string, args: Record<string, unknown> = {}, options: Pick<CallOptions, 'signal'> = {}): Promise<void> {
    if (channels.cast.active()) return this.observedCast(ctx, method, args, options);
    try {
      const request = this.request(ctx, method, args, undefined);
      const sendOptions = { signal: options.signal, retry: this.options.retry };
      if (!this.target.fanout) return this.runtime.transportFor(this.target.topic as string, 'cast').cast(this.target, request, sendOptions);
      return this.fanoutDriver().fanout(this.target, request, sendOptions);
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  /** cast() with diagnostics events. */
  private async observedCast(ctx: Context, method: string, args: Record<string, unknown>, options: Pick<CallOptions, 'signal'>): Promise<void> {
    const trace: TraceCarrier = {};
    const request = this.request(ctx, method, args, trace);
    const sendOptions = { signal: options.signal, retry: this.options.retry };
    const pattern = this.target.fanout ? 'fanout' : 'cast';
    const driver = pattern === 'fanout' ? this.fanoutDriver() : this.runtime.transportFor(this.target.topic as string, 'cast');
    const ref = this.runtime.refOf(driver);
    const event: RpcSendEvent = { transport: ref.transport, scheme: ref.scheme, pattern, target: this.target, method, request, trace, bus: this.runtime.bus, startedAt: performance.now(), durationMs: undefined, error: undefined };
    channels.cast.start.publish(event);
    try {
      await (pattern === 'fanout' ? driver.fanout(this.target, request, sendOptions) : driver.cast(this.target, request, sendOptions));
    } catch (e) {
      finish(channels.cast, event, e);
      throw e;
    }
    finish(channels.cast, event);
  }

  private fanoutDriver(): Driver {
    if (this.target.server !== undefined) throw new InvalidTarget(`${this.target}: a fanout cast cannot name a server`);
    return this.runtime.transportFor(this.target.topic as string, 'fanout');
  }

  private request(ctx: Context, method: string, args: Record<string, unknown>, trace: TraceCarrier | undefined): RpcRequest {
    if (typeof method !== 'string' || method === '') throw new TypeError('method must be a non-empty string');
    if (!this.canSendVersion()) {
      throw new VersionCapError(`Requested message version, ${this.target.version} is incompatible. It needs to be equal in major version and less than or equal in minor version as the specified version cap ${this.options.versionCap}.`);
    }
    const { serializer } = this.runtime;
    // The default serializer changes nothing, and drivers encode the request before returning.
    const identity = serializer === jsonSerializer;
    let serializedArgs = args;
    if (!identity) {
      serializedArgs = {};
      for (const [k, v] of Object.entries(args)) serializedArgs[k] = serializer.serializeEntity(ctx, v);
    }
    return {
      method,
      args: serializedArgs,
      namespace: this.target.namespace,
      version: this.target.version,
      context: identity ? ctx : serializer.serializeContext(ctx),
      uniqueId: uniqueId(),
      trace,
    };
  }
}
