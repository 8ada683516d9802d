import { registerDriver, type DriverFactory } from '@hybridbus/core/driver';
import * as zmq from 'zeromq';
import { ZmqDriver } from './driver.js';
import { parseOptions } from './options.js';

export { ZmqDriver, zmqCapabilities } from './driver.js';
export { parseOptions, type ZmqOptions, type CurveOptions } from './options.js';
export { VERSION as FRAME_VERSION } from './frames.js';
export { FanoutIncomplete } from './fanout.js';
// The name services moved to @hybridbus/nameservice; re-exported so existing imports keep working.
export * from '@hybridbus/nameservice';

/** Generate a CURVE keypair (Z85) for `curve_public_key` / `curve_secret_key`. */
export const curveKeyPair = zmq.curveKeyPair;


export const zmqDriverFactory: DriverFactory = {
  schemes: ['zmq'],
  // The embedded default: the local name service, no server to run.
  defaultUrl: 'zmq://',
  checkUrl: (url) => void parseOptions(url),
  create: (url, context) => new ZmqDriver(parseOptions(url), context),
};

registerDriver(zmqDriverFactory);
export { DEFERRED_OPTION_WARNING } from './zeromq-adapter.js';
