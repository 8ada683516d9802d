/**
 * CPU of another process on this host, in the scale scenario's units (ms): how it charges a
 * broker or a name-service backend (RabbitMQ, Redis, etcd) for its work. The process is found by
 * the TCP port it listens on (broker-cpu.ts), so servers of other runs on the box never count.
 */
import { listenerPid, processCpuUs } from './broker-cpu.js';

/** The pid of the process listening on TCP `port`, or undefined. */
export const pidListeningOn = (port: number): number | undefined => listenerPid(port);

/** User + system CPU the process has used so far (ms), or NaN once it is gone. */
export function processCpuMs(pid: number): number {
  const us = processCpuUs(pid);
  return us === undefined ? NaN : us / 1000;
}

/** The port of a URL (default `fallback`). */
export const portOf = (url: string, fallback: number): number => Number(new URL(url.split(',')[0] as string).port || fallback);
