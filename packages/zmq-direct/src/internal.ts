/**
 * `@hybridbus/zmq-direct/internal`: the driver's helpers around zeromq.js, for its own tests. Not
 * part of the application API; it may change in any release.
 */
export { observe, uninterrupted } from './zeromq-adapter.js';
