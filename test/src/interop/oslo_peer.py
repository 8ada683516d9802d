"""A real Python oslo.messaging peer for hybridbus's interop tests.

    /usr/bin/python3 oslo_peer.py MODE TRANSPORT_URL TOPIC [ARG]

MODE is one of
  server NAME    an RPC server for TOPIC (server NAME) until stdin closes
  client [OPS]   calls/casts a server on TOPIC (echo, add, fail, quota, nosuch, slow, then a
                 call to server 'ts1', a cast and a fanout cast of tick), one result line each,
                 then exits; a Python `server ts1` answers all but quota (NoSuchMethod).
                 ARG, if given: extra ops run after those, comma-separated:
                   timeout  a call of slow(3) with a 1 s timeout (MessagingTimeout expected)
  notify [PRIOS] sends an info and an error notification to TOPIC, then exits; PRIOS, if
                 given, adds one notification per comma-separated priority (audit, debug,
                 warn, critical, sample...) with event_type test.<priority>, payload {"p": priority}
  listen [POOL]  a notification listener on TOPIC (in POOL) until stdin closes

Every event is one JSON line on stdout ({"event": ...}); logs go to stderr.

TRANSPORT_URL picks oslo's driver by its scheme:
  rabbit://user:pw@127.0.0.1:PORT/         the RabbitMQ (AMQP 0-9-1) driver
  amqp://127.0.0.1:PORT/ (or without "/")  the AMQP 1.0 driver (python3-pyngus, python3-qpid-proton)
Options of the driver's conf group ([oslo_rabbit], [oslo_messaging_amqp]) can be given as URL
query parameters, e.g. amqp://127.0.0.1:PORT/?addressing_mode=routable (an unknown one is an
error). Anything else: OSLO_PEER_CONFIG_FILE=<an oslo.config ini file> in the environment.
The AMQP 1.0 driver has no notification pools: `listen POOL` fails with NotImplementedError.
"""
import json
import logging
import os
import sys
import threading
import time

from oslo_config import cfg
import oslo_messaging as om

logging.basicConfig(stream=sys.stderr, level=logging.WARNING)


_out_lock = threading.Lock()


def out(**fields):
    # One write per event line, under a lock: oslo's executor threads print concurrently, and
    # print()'s separate write of the newline let two events run together on one line.
    line = json.dumps(fields) + '\n'
    with _out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


class Api(object):
    target = om.Target(namespace='test', version='1.2')

    def echo(self, ctxt, arg):
        return {'arg': arg, 'ctxt': ctxt}

    def add(self, ctxt, a, b):
        return a + b

    def fail(self, ctxt):
        raise ValueError('boom')

    def slow(self, ctxt, seconds):
        time.sleep(seconds)
        return 'slept %s' % seconds

    def tick(self, ctxt, n):
        out(event='cast', n=n, ctxt=ctxt)


class Notifications(object):
    """A listener endpoint with a method for every oslo priority (one without a method drops them)."""


def _recorder(priority):
    def record(self, ctxt, publisher_id, event_type, payload, metadata):
        out(event='notification', priority=priority, ctxt=ctxt, publisher_id=publisher_id,
            event_type=event_type, payload=payload, metadata=metadata)
    return record


for _priority in ('audit', 'debug', 'info', 'warn', 'error', 'critical', 'sample'):
    setattr(Notifications, _priority, _recorder(_priority))


def conf():
    # The global CONF: oslo registers some options only there (e.g. oslo_messaging_metrics,
    # which the RPC client reads).
    config_file = os.environ.get('OSLO_PEER_CONFIG_FILE')
    cfg.CONF(['--config-file', config_file] if config_file else [], project='interop')
    # The RPC client's (disabled) metrics sender thread would otherwise keep the process alive
    # for 10 s after its first call.
    cfg.CONF.set_override('metrics_thread_stop_timeout', 0, group='oslo_messaging_metrics')
    return cfg.CONF


def run_server(url, topic, name):
    transport = om.get_rpc_transport(conf(), url=url)
    server = om.get_rpc_server(transport, om.Target(topic=topic, server=name), [Api()],
                               executor='threading')
    server.start()
    out(event='ready')
    sys.stdin.read()
    server.stop()
    server.wait()
    transport.cleanup()


def attempt(op, fn):
    try:
        out(event='result', op=op, result=fn())
    except om.RemoteError as e:
        out(event='result', op=op, error='RemoteError', exc_type=e.exc_type, value=e.value)
    except Exception as e:  # a rebuilt builtin exception, or a local one
        out(event='result', op=op, error=type(e).__name__, module=type(e).__module__,
            message=str(e).split('\n')[0])


def run_client(url, topic, extra=None):
    transport = om.get_rpc_transport(conf(), url=url)
    client = om.get_rpc_client(transport, om.Target(topic=topic, namespace='test', version='1.2'),
                               timeout=15)
    ctxt = {'user_id': 'u-py', 'request_id': 'req-py-1'}
    attempt('echo', lambda: client.call(ctxt, 'echo', arg={'s': 'h\u00e9llo \u2603', 'n': [1, 2.5, None, True]}))
    attempt('add', lambda: client.call(ctxt, 'add', a=2, b=40))
    attempt('fail', lambda: client.call(ctxt, 'fail'))
    attempt('quota', lambda: client.call(ctxt, 'quota'))
    attempt('nosuch', lambda: client.call(ctxt, 'nosuch'))
    attempt('monitored', lambda: client.prepare(call_monitor_timeout=2).call(ctxt, 'slow', seconds=3))
    attempt('direct', lambda: client.prepare(server='ts1').call(ctxt, 'add', a=1, b=1))
    attempt('cast', lambda: client.cast(ctxt, 'tick', n=1))
    attempt('fanout', lambda: client.prepare(fanout=True).cast(ctxt, 'tick', n=2))
    for op in (extra.split(',') if extra else []):
        if op == 'timeout':
            attempt('timeout', lambda: client.prepare(timeout=1).call(ctxt, 'slow', seconds=3))
        else:
            raise SystemExit('unknown client op %r' % op)
    transport.cleanup()


def run_notify(url, topic, extra=None):
    transport = om.get_notification_transport(conf(), url=url)
    notifier = om.Notifier(transport, publisher_id='py.node1', driver='messagingv2', topics=[topic])
    ctxt = {'user_id': 'u-py'}
    notifier.info(ctxt, 'compute.instance.create.end', {'seq': 1, 'state': 'active'})
    notifier.error(ctxt, 'compute.instance.create.error', {'seq': 2})
    for priority in (extra.split(',') if extra else []):
        getattr(notifier, priority)(ctxt, 'test.%s' % priority, {'p': priority})
    out(event='sent')
    transport.cleanup()


def run_listen(url, topic, pool):
    transport = om.get_notification_transport(conf(), url=url)
    listener = om.get_notification_listener(transport, [om.Target(topic=topic)], [Notifications()],
                                            executor='threading', pool=pool)
    listener.start()
    out(event='ready')
    sys.stdin.read()
    listener.stop()
    listener.wait()
    transport.cleanup()


def main(argv):
    mode, url, topic = argv[1], argv[2], argv[3]
    extra = argv[4] if len(argv) > 4 else None
    if mode == 'server':
        run_server(url, topic, extra)
    elif mode == 'client':
        run_client(url, topic, extra)
    elif mode == 'notify':
        run_notify(url, topic, extra)
    elif mode == 'listen':
        run_listen(url, topic, extra)
    else:
        raise SystemExit('unknown mode %r' % mode)


if __name__ == '__main__':
    main(sys.argv)
