import type { Driver, IncomingRpc, Subscription } from '../driver.js';
import type { BusRuntime } from '../runtime.js';
import { jsonSerializer } from '../serializer.js';
import { TransportClosed } from '../errors.js';
import { Limiter } from '../limiter.js';
import { serializeFailure } from '../message.js';
import { channels, finish, type RpcDispatchEvent } from '../diagnostics.js';
import { validateTarget, type Target, type TargetFields } from '../target.js';
import { RpcDispatcher, type AccessPolicy, type Endpoint } from './dispatcher.js';
import { isThenable } from '../thenable.js';
import type { Context } from '../message.js';

/**
 * Call-monitor heartbeats go out at half the caller's monitor timeout, but the caller chooses it:
 * bounded here so a tiny value cannot make a tight heartbeat loop, and a huge one cannot overflow
 * setInterval (anything above 2^31-1 ms fires after 1 ms, with a TimeoutOverflowWarning).
 */
const MIN_HEARTBEAT_INTERVAL_MS = 50;
const MAX_HEARTBEAT_INTERVAL_MS = 2 ** 31 - 1;

/** The heartbeat interval for a caller's monitor timeout (ms); undefined: no monitor. */
function heartbeatIntervalMs(callMonitorTimeoutMs: number | undefined): number | undefined {
  if (callMonitorTimeoutMs === undefined || !Number.isFinite(callMonitorTimeoutMs) || callMonitorTimeoutMs <= 0) return undefined;
  return Math.min(Math.max(callMonitorTimeoutMs / 2, MIN_HEARTBEAT_INTERVAL_MS), MAX_HEARTBEAT_INTERVAL_MS);
}

export interface RpcServerOptions {
  readonly accessPolicy?: AccessPolicy | undefined;
  /** Requests handled at once; more wait (default: config `rpc.maxConcurrency`). */
  readonly maxConcurrency?: number | undefined;
  /** Errors every endpoint may raise as part of its API (logged at debug, not error). */
  readonly expectedExceptions?: ReadonlyArray<abstract new (...args: never[]) => Error> | undefined;
}

/** What a server did with the requests it took, since it was made. */
export interface RpcServerCounters {
  /** An endpoint method ran without raising (and a call's reply went out). */
  readonly handled: number;
  /** An endpoint method raised, or a call's result could not be sent back. */
  readonly failed: number;
  /** No endpoint could take it: no such method, a private one, no compatible version. */
  readonly undispatchable: number;
}

/**
 * oslo's RPCServer: listens for a topic (and topic.server, and fanout) on every transport the
 * router sends that topic's call, cast or fanout over, and dispatches to the endpoints.
 */
export class RpcServer {
  readonly target: Target;
  private readonly dispatcher: RpcDispatcher;
  private readonly limiter: Limiter;
  private subscriptions: Subscription[] = [];
  private state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  private readonly count = { handled: 0, failed: 0, undispatchable: 0 };

  constructor(
    private readonly runtime: BusRuntime,
    target: TargetFields,
    endpoints: readonly object[],
    private readonly options: RpcServerOptions = {},
  ) {
    this.target = validateTarget(target, 'rpc-server');
    this.dispatcher = new RpcDispatcher(endpoints, options.accessPolicy ?? runtime.rpc.accessPolicy);
    this.limiter = new Limiter(options.maxConcurrency ?? runtime.rpc.maxConcurrency);
  }

  get running(): boolean {
    return this.state === 'running';
  }

  /** A snapshot of what this server did with its requests. */
  get counters(): RpcServerCounters {
    return { ...this.count };
  }

  /** Requests being handled or waiting for a slot. */
  get inFlight(): number {
    return this.limiter.size;
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new TransportClosed(`RpcServer ${this.target} was already started`);
    this.state = 'starting';
    const routes = this.runtime.transportsFor(this.target.topic as string, ['call', 'cast', 'fanout']);
    try {
      for (const [driver, patterns] of routes) {
        this.subscriptions.push(await this.listen(driver, patterns as Set<'call' | 'cast' | 'fanout'>));
      }
    } catch (e) {
      await Promise.allSettled(this.subscriptions.map((s) => s.stop()));
      this.state = 'stopped';
      throw e;
    }
    this.state = 'running';
  }

  /** Stop taking requests, then wait for those in flight to finish and reply. */
  async stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return this.limiter.drain();
    this.state = 'stopping';
    await Promise.allSettled(this.subscriptions.map((s) => s.stop()));
    this.subscriptions = [];
    await this.limiter.drain();
    this.state = 'stopped';
  }

  private listen(driver: Driver, patterns: Set<'call' | 'cast' | 'fanout'>): Promise<Subscription> {
    const ref = this.runtime.refOf(driver);
    return driver.listen(
      this.target,
      (msg) => {
        if (!channels.dispatch.active()) return this.limiter.run(() => this.process(msg, undefined));
        const event: RpcDispatchEvent = {
          transport: ref.transport,
          scheme: ref.scheme,
          pattern: msg.pattern,
          target: this.target,
          method: msg.request.method,
          request: msg.request,
          trace: msg.request.trace,
          bus: this.runtime.bus,
          startedAt: performance.now(),
          durationMs: undefined,
          error: undefined,
          bind: undefined,
          outcome: undefined,
        };
        channels.dispatch.start.publish(event);
        const over = (): void => finish(channels.dispatch, event, event.outcome === 'ok' ? undefined : event.error);
        const work = this.limiter.run(() => this.process(msg, event));
        return work ? work.then(over) : over();
      },
      { patterns },
    );
  }

  /**
   * One request: resolve it, run the endpoint, reply to a call. An endpoint that returns no
   * promise is answered in the same turn and nothing is returned: its reply is queued before the
   * driver reads its next message, and a busy server no longer makes a promise and two microtask
   * turns per request. Never rejects; errors go to the caller (a call) or the log.
   */
  private process(msg: IncomingRpc, event: RpcDispatchEvent | undefined): Promise<void> | void {
    const { serializer } = this.runtime;
    const { request } = msg;
    let endpoint: Endpoint | undefined;
    let ctx: Context;
    let result: unknown;
    // With a call monitor: when the endpoint began, for heartbeats owed by its synchronous part.
    const began = msg.pattern === 'call' && msg.callMonitorTimeoutMs !== undefined ? performance.now() : 0;
    try {
      // A driver hands over freshly decoded objects: the default serializer can use them as they are.
      // Resolved first: afterwards `endpoint` is undefined only for a request no endpoint takes.
      const found = this.dispatcher.resolve(request);
      endpoint = found.endpoint;
      const identity = serializer === jsonSerializer;
      const c = (ctx = identity ? request.context : serializer.deserializeContext({ ...request.context }));
      let args = request.args as Record<string, unknown>;
      if (!identity) {
        args = {};
        for (const [k, v] of Object.entries(request.args)) args[k] = serializer.deserializeEntity(c, v);
      }
      const bind = event?.bind;
      result = bind ? bind(() => found.fn.call(found.endpoint, c, args)) : found.fn.call(found.endpoint, c, args);
    } catch (err) {
      return this.failed(msg, event, endpoint, err, undefined);
    }
    if (!isThenable(result)) return this.answer(msg, event, ctx, result, endpoint, undefined);
    // Only an endpoint still working needs call-monitor heartbeats.
    const heartbeat = this.heartbeats(msg, began);
    const e = endpoint;
    return Promise.resolve(result).then(
      (r) => this.answer(msg, event, ctx, r, e, heartbeat),
      (err: unknown) => this.failed(msg, event, e, err, heartbeat),
    );
  }

  /**
   * A call's heartbeats while its endpoint works (its caller set a call-monitor timeout), armed
   * once the endpoint returned a promise; one goes at once if its synchronous part (since
   * `began`) already took an interval, as an overdue timer armed before it would have sent.
   */
  private heartbeats(msg: IncomingRpc, began: number): NodeJS.Timeout | undefined {
    const interval = msg.pattern === 'call' ? heartbeatIntervalMs(msg.callMonitorTimeoutMs) : undefined;
    if (interval === undefined) return undefined;
    const beat = (): void =>
      void msg.heartbeat().catch((err: unknown) => {
        // A closed transport will not come back for this call: stop, don't log every beat.
        if (err instanceof TransportClosed) clearInterval(heartbeat);
        else this.runtime.logger.warn({ err }, 'call-monitor heartbeat failed');
      });
    const heartbeat = setInterval(beat, interval);
    heartbeat.unref(); // the handler's own work keeps the process alive, not its heartbeats
    if (performance.now() - began >= interval) beat();
    return heartbeat;
  }

  /** The endpoint returned `result`: reply to a call; a cast or fanout is handled. */
  private answer(msg: IncomingRpc, event: RpcDispatchEvent | undefined, ctx: Context, result: unknown, endpoint: Endpoint | undefined, heartbeat: NodeJS.Timeout | undefined): Promise<void> | void {
    if (msg.pattern !== 'call') return this.handled(event, heartbeat);
    let sent: Promise<void>;
    try {
      sent = msg.reply({ result: this.runtime.serializer.serializeEntity(ctx, result), failure: null });
    } catch (err) {
      return this.failed(msg, event, endpoint, err, heartbeat); // e.g. a result the serializer refuses
    }
    return sent.then(
      () => this.handled(event, heartbeat),
      (err: unknown) => this.failed(msg, event, endpoint, err, heartbeat), // e.g. a result JSON cannot encode
    );
  }

  private handled(event: RpcDispatchEvent | undefined, heartbeat: NodeJS.Timeout | undefined): void {
    clearInterval(heartbeat);
    this.count.handled++;
    if (event) event.outcome = 'ok';
  }

  /** The request failed: log it, and send a call's caller the error. */
  private failed(msg: IncomingRpc, event: RpcDispatchEvent | undefined, endpoint: Endpoint | undefined, err: unknown, heartbeat: NodeJS.Timeout | undefined): Promise<void> | void {
    // First: whatever follows (logging, the caller's expectedExceptions) must not leave it beating.
    clearInterval(heartbeat);
    const { logger } = this.runtime;
    const { request } = msg;
    const isCall = msg.pattern === 'call';
    if (event) {
      event.outcome = endpoint === undefined ? 'undispatchable' : 'failed';
      event.error = err instanceof Error ? err : new Error(String(err));
    }
    const log = { err, method: request.method, target: String(this.target), pattern: msg.pattern };
    if (endpoint === undefined) {
      this.count.undispatchable++;
      // A caller gets the error in its reply; a cast or fanout has nobody else to tell.
      if (isCall) logger.debug(log, 'no endpoint for the request; the caller gets the error');
      else logger.warn(log, `no endpoint can handle this ${msg.pattern}; it is dropped`);
    } else {
      this.count.failed++;
      const expected =
        this.dispatcher.isExpected(endpoint, err) || (this.options.expectedExceptions?.some((c) => err instanceof c) ?? false);
      if (expected) logger.debug(log, 'expected exception during message handling');
      else logger.error(log, 'exception during message handling');
    }
    if (!isCall) return;
    let sent: Promise<void>;
    try {
      sent = msg.reply({ result: null, failure: serializeFailure(err) });
    } catch (e) {
      sent = Promise.reject(e as Error);
    }
    return sent.catch((e: unknown) => logger.error({ ...log, err: e }, 'could not send the failure reply'));
  }
}
