/**
 * @hybridbus/core: what applications use. Driver authors import `@hybridbus/core/driver`,
 * the driver kit (the contract, oslo's codec and the pieces every driver shares).
 */
export * from './errors.js';
export { maskSecrets, maskUrl } from './mask.js';
export * from './target.js';
export { PRIORITIES, isPriority, type Context, type Priority } from './message.js';
export { PATTERNS, registeredSchemes, type Driver, type DriverCapabilities, type DriverStats, type HealthState, type Pattern, type TransportHealth } from './driver.js';
export { channels, type NotifyDispatchEvent, type NotifySendEvent, type RpcDispatchEvent, type RpcSendEvent, type TraceCarrier, type TransportEvent, type TransportRef } from './diagnostics.js';
export * from './serializer.js';
export type { Logger } from './logger.js';
export { defaultLogger } from './logger.js';
export * from './config.js';
export { Bus, type BusHealth, type BusOptions } from './bus.js';
export { RpcClient, type CallOptions, type PrepareOptions, type RpcClientOptions } from './rpc/client.js';
export { RpcServer, type RpcServerCounters, type RpcServerOptions } from './rpc/server.js';
export type { Endpoint, AccessPolicy } from './rpc/dispatcher.js';
export { Notifier, type NotifierOptions } from './notify/notifier.js';
export * from './notify/listener.js';

import { registerDriver } from './driver.js';
import { memoryDriverFactory } from './drivers/memory.js';
registerDriver(memoryDriverFactory);
