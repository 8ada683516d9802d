"""The `oslo` contender's child for `hybridbus bench`: Python oslo.messaging's rabbit driver.

    /usr/bin/python3 bench_child.py SPEC_JSON

Speaks the bench protocol of benchmarks/src/engine/contender.ts: JSON lines on the socket whose
fd is in NODE_CHANNEL_FD (Node's IPC channel in JSON mode), the spec as the last argument.
Servers host an RPC server per name (endpoints `echo` and `sink`, threading executor) or, for
notify, a notification listener in a pool; the client calls, casts, fans out or notifies.
Calls with N in flight run N threads each calling in turn (oslo's RPC client blocks).
"""
import ctypes
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback

from oslo_config import cfg
import oslo_messaging as om

logging.basicConfig(stream=sys.stderr, level=logging.ERROR)

PERCENTILES = [0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97.5, 99, 99.5, 99.9, 99.95,
               99.99, 100]
# Threads sending casts, fanouts and notifications: each waits for its publisher confirm
# (oslo's rabbit driver confirms every publish), so a few keep the broker busy; more only
# queue on the GIL and the connection pool.
SEND_THREADS = 8
# Worker threads per RPC server when a process hosts several (oslo's default is 64).
FANOUT_POOL_SIZE = 4
# Give up closing cleanly after this long (the engine kills a child 2 s after asking).
EXIT_GRACE_S = 1.5


def die_with_parent():
    """Linux: SIGKILL this process when the parent dies, so no orphan is left behind."""
    try:
        libc = ctypes.CDLL('libc.so.6', use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() == 1:
        os._exit(0)


class Channel(object):
    """The IPC channel: one JSON object per line, both ways."""

    def __init__(self):
        self.sock = socket.socket(fileno=int(os.environ['NODE_CHANNEL_FD']))
        self.lock = threading.Lock()
        self.buf = b''

    def send(self, **msg):
        data = (json.dumps(msg) + '\n').encode()
        with self.lock:
            self.sock.sendall(data)

    def messages(self):
        while True:
            while b'\n' not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return  # the parent is gone
                self.buf += chunk
            line, self.buf = self.buf.split(b'\n', 1)
            if line.strip():
                yield json.loads(line)


def wall_ms():
    return time.time() * 1000.0


def cpu_us():
    return time.process_time() * 1e6


class Payloads(object):
    def __init__(self, sizes):
        self.texts = ['x' * n for n in sizes]
        self.i = 0
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            t = self.texts[self.i]
            self.i = (self.i + 1) % len(self.texts)
        return t


class Arrivals(object):
    """One-way messages counted across every server of this process; answers `expect`."""

    def __init__(self, chan):
        self.chan = chan
        self.lock = threading.Lock()
        self.count = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.want = None

    def hit(self):
        t = wall_ms()
        with self.lock:
            if self.count == 0:
                self.first_at = t
            self.count += 1
            self.last_at = t
            if self.want is not None and self.count >= self.want[0]:
                self._answer()

    def expect(self, n, reset):
        with self.lock:
            self.want = (n, reset)
            if self.count >= n:
                self._answer()

    def _answer(self):
        self.chan.send(kind='reached', count=self.count, firstAt=self.first_at, lastAt=self.last_at)
        if self.want[1]:
            self.count = 0
            self.first_at = self.last_at = 0.0
        self.want = None


class RpcEndpoint(object):
    def __init__(self, arrivals):
        self.arrivals = arrivals

    def echo(self, ctxt, p):
        return {'p': p}

    def sink(self, ctxt, p):
        self.arrivals.hit()


class NotifyEndpoint(object):
    def __init__(self, arrivals):
        self.arrivals = arrivals

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self.arrivals.hit()


def conf():
    # The global CONF: oslo registers some options only there (the RPC client reads them).
    cfg.CONF([], project='hybridbus-bench')
    return cfg.CONF


def run_server(chan, spec):
    url = spec['data']['url']
    topic = spec['topic']
    arrivals = Arrivals(chan)
    servers = []
    transports = []
    if spec['scenario'] == 'notify':
        transport = om.get_notification_transport(conf(), url=url)
        transports.append(transport)
        listener = om.get_notification_listener(transport, [om.Target(topic=topic)],
                                                [NotifyEndpoint(arrivals)], executor='threading',
                                                pool='bench')
        listener.start()
        servers.append(listener)
    else:
        c = conf()
        if len(spec['servers']) > 1:
            # Many servers in one process (fanout to N): oslo's default of up to 64 worker threads
            # per server would mean thousands of threads fighting for 2 cores during a burst.
            from oslo_messaging import server as om_server
            c.register_opts(om_server._pool_opts)
            c.set_override('executor_thread_pool_size', FANOUT_POOL_SIZE)
        # A transport (connection) per server: each is its own peer, as separate nodes are.
        for name in spec['servers']:
            transport = om.get_rpc_transport(c, url=url)
            transports.append(transport)
            server = om.get_rpc_server(transport, om.Target(topic=topic, server=name),
                                       [RpcEndpoint(arrivals)], executor='threading')
            server.start()
            servers.append(server)
    chan.send(kind='ready', endpoints=[])
    for m in chan.messages():
        kind = m.get('kind')
        if kind == 'expect':
            arrivals.expect(int(m['n']), m.get('reset') is True)
        elif kind == 'cpu':
            chan.send(kind='cpu', us=cpu_us())
        elif kind == 'exit':
            break

    def close():
        for s in servers:
            s.stop()
        for s in servers:
            s.wait()
        for t in transports:
            t.cleanup()
    close_within(close)


def close_within(close):
    """Close in a thread; exit 0 when done or after EXIT_GRACE_S, whichever comes first."""
    t = threading.Thread(target=close, daemon=True)
    t.start()
    t.join(EXIT_GRACE_S)
    sys.stderr.flush()
    os._exit(0)


def percentile(sorted_us, p):
    if not sorted_us:
        return float('nan')
    k = max(0, min(len(sorted_us) - 1, int(-(-p * len(sorted_us) // 100)) - 1))
    return sorted_us[k]


def run_client(chan, spec):
    url = spec['data']['url']
    topic = spec['topic']
    scenario = spec['scenario']
    payloads = Payloads(spec['payload']['sizes'])
    ctxt = {}
    if scenario == 'notify':
        transport = om.get_notification_transport(conf(), url=url)
        notifier = om.Notifier(transport, publisher_id='bench.%d' % os.getpid(), driver='messaging',
                               topics=[topic])

        def one():
            notifier.info(ctxt, 'bench.event', {'p': payloads.next()})
    else:
        transport = om.get_rpc_transport(conf(), url=url)
        client = om.get_rpc_client(transport, om.Target(topic=topic))
        fanout = client.prepare(fanout=True)

        def one():
            if scenario == 'fanout':
                fanout.cast(ctxt, 'sink', p=payloads.next())
            else:
                client.cast(ctxt, 'sink', p=payloads.next())

    def call():
        client.call(ctxt, 'echo', p=payloads.next())

    chan.send(kind='ready')
    for m in chan.messages():
        kind = m.get('kind')
        c0 = cpu_us()
        t0 = time.perf_counter()
        if kind == 'exit':
            break
        elif kind == 'latency':
            count = int(m['count'])
            lat = []
            for _ in range(count):
                t = time.perf_counter_ns()
                call()
                lat.append((time.perf_counter_ns() - t) / 1000.0)
            seconds = time.perf_counter() - t0
            lat.sort()
            chan.send(kind='done', ops=count, seconds=seconds, cpuUs=cpu_us() - c0,
                      histogram=[[p, percentile(lat, p)] for p in PERCENTILES])
        elif kind == 'throughput':
            end = t0 + float(m['durationMs']) / 1000.0
            done = run_threads(int(m['inflight']), call, lambda: time.perf_counter() < end)
            chan.send(kind='done', ops=done, seconds=time.perf_counter() - t0, cpuUs=cpu_us() - c0)
        elif kind == 'send':
            count = m.get('count')
            end = t0 + float(m['durationMs']) / 1000.0 if m.get('durationMs') is not None else None
            issued = [0]
            lock = threading.Lock()

            def more():
                with lock:
                    if count is not None and issued[0] >= count:
                        return False
                    if end is not None and time.perf_counter() >= end:
                        return False
                    issued[0] += 1
                    return True
            started_at = wall_ms()
            threads = 1 if count is not None and count < SEND_THREADS else SEND_THREADS
            sent = run_threads(threads, one, more)
            ended_at = wall_ms()
            chan.send(kind='done', ops=sent, seconds=time.perf_counter() - t0, cpuUs=cpu_us() - c0,
                      startedAt=started_at, endedAt=ended_at)
        else:
            raise RuntimeError('unknown command %r' % kind)

    close_within(transport.cleanup)


def run_threads(n, op, more):
    """n threads doing op() while more(); returns how many op() completed. An error is raised."""
    counts = [0] * n
    errors = []

    def loop(i):
        try:
            while more():
                op()
                counts[i] += 1
        except Exception as e:  # reported by the caller
            errors.append(e)
    if n == 1:
        loop(0)
    else:
        threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return sum(counts)


def main():
    die_with_parent()
    chan = Channel()
    try:
        spec = json.loads(sys.argv[-1])
        if spec['role'] == 'server':
            run_server(chan, spec)
        else:
            run_client(chan, spec)
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        try:
            chan.send(kind='error', message='%s: %s' % (type(e).__name__, e))
        except Exception:
            pass
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


if __name__ == '__main__':
    main()
