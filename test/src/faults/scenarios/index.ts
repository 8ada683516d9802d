/** Every scenario of the fault campaign, in the order the campaign runs them. */
import type { Scenario } from '../types.js';
import { rabbitClusterFailover, rabbitRestartNotify, redisOutage, sentinelFailover } from './servers.js';
import { zmqAckedKill, zmqCurveUnauthorized, zmqFrozenServer, zmqFuzz } from './zmq.js';

export const scenarios: readonly Scenario[] = [
  zmqFuzz,
  zmqCurveUnauthorized,
  zmqAckedKill,
  zmqFrozenServer,
  rabbitRestartNotify,
  redisOutage,
  rabbitClusterFailover,
  sentinelFailover,
];
