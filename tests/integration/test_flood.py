#!/usr/bin/python3
# Floods (issue 10): a client that never reads while another floods it is
# closed once c2s_send_queue_max is queued for it, and the server's memory
# stays bounded; a client flooding as fast as it can at default limits is
# closed by c2s_stanza_rate / c2s_rate_limit again and again while a pair
# of other sessions keeps exchanging messages, all of which arrive. Only
# functional outcomes are asserted; the pair's round-trip latency with and
# without the flood is printed for the closing note (figures come from
# ../shared/bench, never from timed assertions).

import multiprocessing
import os
import queue
import select
import socket
import ssl
import sys
import time
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402

suite = pvtest.Suite('flood')
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw', 'mallory': 'mall0ry-pw',
         'victim': 'v1ct1m-pw', 'sink': 's1nk-pw'}
QUEUE_MAX = 64 * 1024
# The pair: PAIR_RATE round trips per second, half the default
# c2s_stanza_rate (back-to-back round trips would be a flood themselves),
# ROUND_TRIPS per phase: more stanzas in all than the bucket of the
# stanza rate holds, so it must refill
PAIR_RATE = 100
ROUND_TRIPS = 250


def asan():
    try:
        with open(pvtest.palaverd_path(), 'rb') as f:
            return b'__asan_init' in f.read()
    except OSError:
        return False


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise pvtest.TestFailure('no VmRSS for pid %d' % pid)


def drain(c):
    """Reads whatever c has received without blocking; False once the
    server closed the stream."""
    try:
        while True:
            r, _, _ = select.select([c.sock], [], [], 0)
            if not r and not (c.tls_sock and c.tls_sock.pending()):
                return True
            c._recv_some(0.001)
            del c.pending[:]
            del c.received[:]
            if c.eof or c.closed:
                return False
    except (pvtest.StreamClosed, ET.ParseError):
        return False


def message(to, body, i, kind='chat'):
    return ("<message type='%s' to='%s' id='f%d'><body>%s</body>"
            "</message>" % (kind, to, i, body))


# --------------------------------------------------------------------------
# c2s_send_queue_max

@suite.test
def send_queue_limit():
    # the flooder's own limits are off so that only the queue is at stake
    srv = suite.server(users=USERS, c2s_send_queue_max='%dK' %
                       (QUEUE_MAX // 1024), c2s_stanza_rate='off',
                       c2s_rate_limit='off')
    srv.start()
    pid = srv.proc.pid
    a = srv.login('alice', resource='queue')
    b = srv.login('bob', resource='queue', tls='direct')
    victim = srv.login('victim', resource='never-reads')
    flooder = srv.login('mallory', resource='queue-flood')
    # what a server without the limit would hold for the victim grows by
    # hundreds of MiB per second here; ASan's quarantine keeps up to
    # 256 MiB of freed memory resident
    bound = (320 if asan() else 48) * 1024
    rss0 = rss_kib(pid)
    body = 'q' * 4000
    # headlines to a full JID that is gone are dropped (RFC 6121
    # §8.5.3.2.1), so what is still in flight when the victim is closed
    # does not bounce back to a flooder that is busy writing
    batch = ''.join(message(victim.jid, body, i, 'headline')
                    for i in range(16))
    marker = 'stream error policy-violation: too much queued output'
    sent = 0
    deadline = time.monotonic() + 20 * pvtest.time_factor()
    peak = rss0
    while marker not in srv.log_text():
        try:
            flooder.send(batch)
        except OSError as e:
            pvtest.fail('flooder cut off (%s) before the victim' % e)
        sent += len(batch)
        check(drain(flooder), 'flooder closed: %s' % flooder.received)
        peak = max(peak, rss_kib(pid))
        check(peak - rss0 < bound,
              'palaverd RSS grew by %d KiB after %d KiB were sent to a '
              'client that does not read, and it is still connected' %
              (peak - rss0, sent // 1024))
        check(time.monotonic() < deadline,
              'client that does not read not closed after %d KiB' %
              (sent // 1024))
    print('     sent %d KiB to a client that does not read before it was '
          'closed; RSS %d -> %d KiB (peak)' % (sent // 1024, rss0, peak))
    # reading now, the victim finds its stream cut (the error could not
    # be queued behind a full queue: the connection is aborted)
    check(victim.wait_closed(10 * pvtest.time_factor()),
          'connection of the client that did not read still open')
    # the server keeps serving everybody else, the flooder included
    pvtest.message_round_trip(a, b)
    r = flooder.iq("<iq type='get' id='still' to='localhost'>"
                   "<ping xmlns='urn:xmpp:ping'/></iq>")
    check_eq(r.get('type'), 'result', 'ping from the flooder afterwards')
    again = srv.login('victim', resource='again')
    pvtest.message_round_trip(again, a)
    for c in (a, b, flooder, again):
        c.close()


# --------------------------------------------------------------------------
# flood fairness

def sink_proc(host, port, domain, cafile, ready, stop):
    """Logs in as sink and throws away everything it receives."""
    c = pvtest.RawClient(host, port, domain, cafile=cafile, tls='direct')
    c.login('sink@' + domain, USERS['sink'], resource='sink')
    ready.set()
    c.sock.settimeout(0.2)
    while not stop.is_set():
        try:
            if not c.sock.recv(65536):
                break
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except OSError:
            break
    c.close()


def flooder_proc(host, port, domain, cafile, started, stop, results):
    """Logs in as mallory and sends messages to the sink as fast as it
    can until the server closes the stream; then again, alternating small
    messages (the stanza rate bites first) and large ones (the byte rate
    bites first). Reports (condition, text, stanzas sent, ended by server)
    per connection."""
    to = 'sink@' + domain
    small = 'flood'
    large = 'F' * 8000
    n = 0
    while not stop.is_set():
        body = small if n % 2 == 0 else large
        n += 1
        c = pvtest.RawClient(host, port, domain, cafile=cafile)
        try:
            c.login('mallory@' + domain, USERS['mallory'], resource='flood')
        except Exception as e:          # noqa: BLE001
            results.put(('login failed', str(e), 0, False))
            continue
        started.set()
        sent = 0
        by_server = False
        chunk = ''.join(message(to, body, i)
                        for i in range(max(1, 32768 // (len(body) + 80))))
        per_chunk = chunk.count('<message ')
        while not stop.is_set():
            try:
                c.send(chunk)
                sent += per_chunk
            except OSError:
                by_server = True
                break
            if not drain(c):
                by_server = True
                break
        cond = text = None
        if by_server:
            try:
                deadline = time.monotonic() + 5
                while not (c.eof or c.closed) and \
                        time.monotonic() < deadline:
                    c._recv_some(0.2)
            except (pvtest.StreamClosed, ET.ParseError):
                pass
            for el in c.received + c.pending:
                if el.tag == '{%s}error' % pvtest.NS_STREAMS:
                    for ch in el:
                        name = ch.tag.split('}', 1)[1]
                        if name == 'text':
                            text = ch.text
                        else:
                            cond = name
        results.put((cond, text, sent, by_server))
        c.close()


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def round_trips(a, b, n, tag):
    """n message round trips a -> b -> a at PAIR_RATE per second; every
    message must arrive. Returns the round-trip times in ms."""
    rtts = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        pvtest.message_round_trip(a, b, text='%s-%d' % (tag, i))
        t1 = time.perf_counter()
        rtts.append((t1 - t0) * 1000.0)
        # the pair's send schedule, not a wait for the server
        delay = start + (i + 1) / PAIR_RATE - t1
        if delay > 0:
            time.sleep(delay)
    return rtts


@suite.test
def flood_fairness():
    srv = suite.server(users=USERS)     # every c2s limit at its default
    srv.start()
    a = srv.login('alice', resource='pair')
    b = srv.login('bob', resource='pair', tls='direct')
    base = round_trips(a, b, ROUND_TRIPS, 'calm')

    ctx = multiprocessing.get_context('fork')
    stop = ctx.Event()
    sink_ready = ctx.Event()
    started = ctx.Event()
    results = ctx.Queue()
    host, port = srv.host('c2s'), srv.port('c2s')
    tls_port = srv.port('c2s_direct_tls')
    sink = ctx.Process(target=sink_proc, args=(
        host, tls_port, srv.domain, srv.cafile, sink_ready, stop))
    sink.start()
    flooder = None
    try:
        check(sink_ready.wait(20 * pvtest.time_factor()),
              'sink did not log in')
        flooder = ctx.Process(target=flooder_proc, args=(
            host, port, srv.domain, srv.cafile, started, stop, results))
        flooder.start()
        check(started.wait(20 * pvtest.time_factor()),
              'flooder did not log in')
        loaded = round_trips(a, b, ROUND_TRIPS, 'flood')
    finally:
        stop.set()
        cycles = []
        # read the reports before joining: a child blocks on a full pipe
        deadline = time.monotonic() + 30 * pvtest.time_factor()
        while flooder is not None and time.monotonic() < deadline and \
                (flooder.is_alive() or not results.empty()):
            try:
                cycles.append(results.get(timeout=0.1))
            except queue.Empty:
                pass
        for p in (flooder, sink):
            if p is not None:
                p.join(30)
                if p.is_alive():
                    p.kill()
    ended = [c for c in cycles if c[3]]
    print('     pair round trip, ms: calm p50 %.2f p99 %.2f; during the '
          'flood p50 %.2f p99 %.2f (%d flood connections, %d stanzas '
          'written)' %
          (percentile(base, 50), percentile(base, 99),
           percentile(loaded, 50), percentile(loaded, 99), len(cycles),
           sum(c[2] for c in cycles)))
    check(not [c for c in cycles if c[0] == 'login failed'],
          'flooder could not log in again: %s' % cycles)
    check(ended, 'the flooder was never closed by the server (%s)' % cycles)
    for cond, text, sent, _ in ended:
        # a flood that got its stream error: it must be the rate limits'
        if cond is not None:
            check_eq(cond, 'policy-violation', 'stream error for a flood')
            check(text in ('too many stanzas', 'too many bytes'),
                  'stream error text %r' % text)
    texts = set(c[1] for c in ended)
    check('too many stanzas' in texts or 'too many bytes' in texts,
          'no flood connection got a rate-limit stream error: %s' % cycles)
    log = srv.log_text()
    check('stream error policy-violation: too many' in log,
          'no log line for the closed flooder')
    # the pair is still there and was never cut off
    pvtest.message_round_trip(a, b)
    for c in (a, b):
        c.close()


if __name__ == '__main__':
    suite.main()
