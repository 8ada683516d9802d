/**
 * hybridbus: the one package an application installs. It is core's application API with every
 * driver registered, so any transport URL a config names works:
 *
 *   import { Bus } from 'hybridbus';
 *   const bus = await Bus.fromConfig('hybridbus.yaml');   // no config: zmq://, the embedded default
 *
 * A deployment that wants fewer dependencies installs @hybridbus/core and the driver packages
 * it uses, and imports each driver once.
 */
import '@hybridbus/zmq-direct';
import '@hybridbus/rabbit-brokered';
import '@hybridbus/amqp1';

export * from '@hybridbus/core';
export { curveKeyPair } from '@hybridbus/zmq-direct';
