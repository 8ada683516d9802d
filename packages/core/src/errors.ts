import { maskSecrets } from './mask.js';

/**
 * Every error hybridbus throws extends HybridbusError and carries a stable `code`
 * (after undici's errors): match on `code` or `instanceof`, never on messages.
 */
export class HybridbusError extends Error {
  readonly code: string = 'HB_ERROR';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * Invalid configuration: the message names the key, the bad value and the expected form. A URL
 * in a problem is shown with its password masked (mask.ts), whoever raised the error.
 */
export class ConfigError extends HybridbusError {
  override readonly code = 'HB_CONFIG';
  readonly problems: readonly string[];
  constructor(problems: readonly string[], source?: string) {
    const masked = problems.map(maskSecrets);
    super(`invalid hybridbus config${source ? ` (${maskSecrets(source)})` : ''}:\n  ${masked.join('\n  ')}`);
    this.problems = masked;
  }
}

/** A Target lacks a field its role requires, or a field is malformed. */
export class InvalidTarget extends HybridbusError {
  override readonly code = 'HB_INVALID_TARGET';
  constructor(message: string, readonly target?: unknown) {
    super(message);
  }
}

/** No reply (or, with call monitoring, no heartbeat) arrived in time. */
export class MessagingTimeout extends HybridbusError {
  override readonly code: string = 'HB_TIMEOUT';
}

/** The server stopped sending call-monitor heartbeats: it died or is unreachable. */
export class CallMonitorTimeout extends MessagingTimeout {
  override readonly code = 'HB_CALL_MONITOR_TIMEOUT';
}

/** The caller's AbortSignal fired. */
export class CallAborted extends HybridbusError {
  override readonly code = 'HB_ABORTED';
}

/** The requested version is above the client's version cap. */
export class VersionCapError extends HybridbusError {
  override readonly code = 'HB_VERSION_CAP';
}

/** Dispatch: a compatible endpoint exists but none has the method (or it is private). */
export class NoSuchMethod extends HybridbusError {
  override readonly code = 'HB_NO_SUCH_METHOD';
  readonly module = 'oslo_messaging.rpc.dispatcher';
  constructor(readonly method: string) {
    super(`Endpoint does not support RPC method ${method}`);
  }
}

/** Dispatch: no endpoint matches the namespace and version of the request. */
export class UnsupportedVersion extends HybridbusError {
  override readonly code = 'HB_UNSUPPORTED_VERSION';
  readonly module = 'oslo_messaging.rpc.dispatcher';
  constructor(readonly version: string, readonly method?: string) {
    super(`Endpoint does not support RPC version ${version}${method ? `. Attempted method: ${method}` : ''}`);
  }
}

/** An exception raised by the remote endpoint, rebuilt from oslo's failure format. */
export class RemoteError extends HybridbusError {
  override readonly code = 'HB_REMOTE';
  constructor(
    readonly remoteClass: string,
    readonly remoteModule: string,
    readonly remoteMessage: string,
    readonly remoteTraceback: readonly string[],
    readonly remoteArgs: readonly unknown[] = [],
    readonly remoteKwargs: Readonly<Record<string, unknown>> = {},
  ) {
    super(`Remote error: ${remoteClass} ${remoteMessage}\n${remoteTraceback.join('')}`.trimEnd());
  }
}

/** What `remoteError()` takes beside the class and the message. */
export interface RemoteErrorOptions {
  /**
   * The module a Python caller looks the class up in: `builtins` for ValueError, KeyError, …;
   * a module in the caller's `allowed_remote_exmods` for its own classes. Default "hybridbus".
   */
  readonly module?: string | undefined;
  /** The exception's positional arguments (oslo: `failure.args`); default `[message]`. */
  readonly args?: readonly unknown[] | undefined;
  /** Its keyword arguments (oslo: `failure.kwargs`); default none. */
  readonly kwargs?: Readonly<Record<string, unknown>> | undefined;
}

/**
 * The error an endpoint throws so that its caller sees the remote class `cls` of `module`, e.g.
 * `throw remoteError('ValueError', 'bad flavor', { module: 'builtins' })`. A hybridbus caller
 * gets a RemoteError with that remoteClass, remoteModule, remoteMessage, remoteArgs and
 * remoteKwargs; Python oslo.messaging rebuilds `module.cls(*args, **kwargs)` when the module is
 * `builtins` or in its `allowed_remote_exmods`, and raises `oslo_messaging.RemoteError` (with
 * `exc_type` = cls) otherwise. List RemoteError in the endpoint's `expectedExceptions` when it is
 * part of the API (not logged as a server fault).
 */
export function remoteError(cls: string, message: string, options: RemoteErrorOptions = {}): RemoteError {
  if (typeof cls !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(cls)) {
    throw new ConfigError([`remoteError class: must be a class name such as "ValueError": value was ${JSON.stringify(cls)}`], 'remoteError()');
  }
  const module = options.module ?? 'hybridbus';
  if (typeof module !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(module)) {
    throw new ConfigError([`module: must be a dotted module name such as "builtins" or "nova.exception": value was ${JSON.stringify(module)}`], 'remoteError() options');
  }
  return new RemoteError(cls, module, message, [], options.args ?? [message], options.kwargs ?? {});
}

/** The message could not be handed to the transport (after retries). */
export class MessageDeliveryFailure extends HybridbusError {
  override readonly code: string = 'HB_DELIVERY_FAILED';
}

/** The transport reports that nobody can receive the message (no queue, no live server). */
export class MessageUndeliverable extends MessageDeliveryFailure {
  override readonly code = 'HB_UNDELIVERABLE';
}

/** A bounded send queue is full: slow down or raise the bound. */
export class QueueFull extends MessageDeliveryFailure {
  override readonly code = 'HB_QUEUE_FULL';
}

/** A message is larger than the configured maximum. */
export class MessageTooLarge extends MessageDeliveryFailure {
  override readonly code = 'HB_TOO_LARGE';
}

/** A received message does not follow the wire format; it is dropped and counted. */
export class MalformedMessage extends HybridbusError {
  override readonly code = 'HB_MALFORMED';
}

/** The transport, client or server is closed or stopping. */
export class TransportClosed extends HybridbusError {
  override readonly code = 'HB_CLOSED';
}

/** The driver does not declare the capability this operation needs. */
export class UnsupportedFeature extends HybridbusError {
  override readonly code = 'HB_UNSUPPORTED';
}

/** No driver is registered for a URL scheme. */
export class UnknownTransport extends HybridbusError {
  override readonly code = 'HB_UNKNOWN_TRANSPORT';
}

/** The connection carrying an in-flight message broke: it may or may not have been processed. */
export class ConnectionLost extends MessageDeliveryFailure {
  override readonly code = 'HB_CONNECTION_LOST';
}

/** The peer refused our credentials (CURVE keys, SASL) or we refused its. */
export class AuthenticationFailed extends MessageDeliveryFailure {
  override readonly code = 'HB_AUTH';
}

/** The errors a peer may name by code on the wire (a refusal), and what each becomes here. */
const BY_CODE: Readonly<Record<string, new (message: string) => HybridbusError>> = {
  HB_DELIVERY_FAILED: MessageDeliveryFailure,
  HB_UNDELIVERABLE: MessageUndeliverable,
  HB_QUEUE_FULL: QueueFull,
  HB_TOO_LARGE: MessageTooLarge,
  HB_MALFORMED: MalformedMessage,
  HB_CLOSED: TransportClosed,
  HB_UNSUPPORTED: UnsupportedFeature,
  HB_CONNECTION_LOST: ConnectionLost,
  HB_AUTH: AuthenticationFailed,
};

/** The error for a code a peer sent; an unknown or missing code is a MessageDeliveryFailure. */
export function errorFromCode(code: string | undefined, message: string): HybridbusError {
  const E = (code !== undefined && Object.hasOwn(BY_CODE, code) ? BY_CODE[code] : undefined) ?? MessageDeliveryFailure;
  return new E(message);
}
