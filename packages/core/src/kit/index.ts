/**
 * The driver kit: `@hybridbus/core/driver`, what every driver shares, so that a driver
 * implements only how its transport moves messages. Applications import `@hybridbus/core`.
 */
export { PendingCalls, type PendingCall } from './pending-calls.js';
export { RecentIds, SeenIds, type RecentIdsOptions } from './recent-ids.js';
export { Semaphore } from './semaphore.js';
export { TroubledPeers } from './troubled-peers.js';
export { exchangeOf, fanoutName, serverKey } from './addressing.js';
export { errorFromCode } from '../errors.js';
export {
  CallCancel,
  defaultTransportUrl,
  driverFor,
  PATTERNS,
  registerDriver,
  registeredSchemes,
  schemeOf,
  type Pattern,
  type DriverCallOptions,
  type Driver,
  type DriverCapabilities,
  type DriverContext,
  type DriverStats,
  type HealthState,
  type TransportHealth,
  type DriverFactory,
  type IncomingNotification,
  type IncomingRpc,
  type ListenOptions,
  type NotificationListenOptions,
  type SendOptions,
  type Subscription,
} from '../driver.js';
export * from '../message.js';
export { publishTransportEvent, type TransportEvent } from '../diagnostics.js';
export { MemoryDriver, memoryDriverFactory } from '../drivers/memory.js';
export { Limiter } from '../limiter.js';
export { optionParsers, urlDecode, urlHosts, UrlOptions, type OptionParser, type OptionSpec, type UrlHost } from './url-options.js';
