/**
 * Makes argv[2] sockets one after another, takes each one's event observer through the driver's
 * observe() and closes it; prints JSON { ok, <error code>: count }. zmq-adapter.test.ts runs it
 * under a storm of signals.
 */
import * as zmq from 'zeromq';
import { observe } from '@hybridbus/zmq-direct/internal';

const n = Number(process.argv[2]);
zmq.context.maxSockets = zmq.context.maxSocketsLimit;
const counts: Record<string, number> = {};
for (let i = 0; i < n; i++) {
  const socket = new zmq.Router({ linger: 0 });
  try {
    observe(socket);
    counts['ok'] = (counts['ok'] ?? 0) + 1;
  } catch (e) {
    const code = String((e as { code?: unknown }).code);
    counts[code] = (counts[code] ?? 0) + 1;
  }
  socket.close();
  // Closed sockets are reaped on libzmq's thread: let it catch up now and then.
  if (i % 200 === 199) await new Promise((r) => setImmediate(r));
}
console.log(JSON.stringify(counts));
