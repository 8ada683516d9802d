/** What the zmq tests share: URLs on a private name service, and buses closed after the file. */
import { Bus, type ConfigInput } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import type { ZmqDriver } from '@hybridbus/zmq-direct';
import { after } from 'node:test';

/** zmq:// on the local name service in `dir`, with fast heartbeats and no lookup cache. */
export const zmqUrl = (dir: string, extra = ''): string => `zmq://?matchmaker=local:${dir}&heartbeat_interval=200&ns_cache=0${extra}`;
export const cfg = (u: string): ConfigInput => ({ transports: { default: u } });
export const driverOf = (b: Bus): ZmqDriver => b.transport('default') as ZmqDriver;

/** Buses made through the returned function are closed when the test file ends. */
export function busesClosedAfter(): { bus: (u: string) => Promise<Bus>; buses: Bus[] } {
  const buses: Bus[] = [];
  after(() => Promise.allSettled(buses.map((b) => b.close())));
  return {
    buses,
    bus: async (u) => {
      const b = await Bus.create(cfg(u));
      buses.push(b);
      return b;
    },
  };
}
