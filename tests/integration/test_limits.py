#!/usr/bin/python3
# Connection limits that need their own servers: the unauthenticated idle
# timeout (c2s_auth_timeout), the byte rate limit (c2s_rate_limit), the
# throttling of repeated failed logins from one address (auth_failure_limit
# within auth_failure_window), connections per IP and in total
# (max_connections_per_ip, max_connections), the stanza rate
# (c2s_stanza_rate) and "off" for a limit. Each limit must be answered
# with its stream error and a log line while other clients keep working.
# c2s_max_stanza_size, xml_max_depth: test_hostile.py; c2s_send_queue_max:
# test_flood.py.

import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402

suite = pvtest.Suite('limits')
USERS = {'mallory': 'mall0ry-pw', 'alice': 'al1ce-pw', 'bob': 'b0b-pw'}
AUTH_TIMEOUT = 2.0
FAIL_LIMIT = 3
FAIL_WINDOW = 4


def limits_server():
    return suite.shared_server('limits', users=USERS,
                               c2s_auth_timeout='%ds' % AUTH_TIMEOUT,
                               c2s_rate_limit='2K')


@suite.test
def auth_timeout():
    srv = limits_server()
    a = srv.login('alice', resource='idle-bystander')
    b = srv.login('bob', resource='idle-bystander', tls='direct')
    t0 = time.monotonic()
    idle = [srv.client(tls='direct'), srv.client(tls='plain')]
    for c in idle:
        c.open_stream()
    for c in idle:
        check_eq(c.expect_stream_error((AUTH_TIMEOUT + 8) *
                                       pvtest.time_factor()),
                 'connection-timeout', 'idle unauthenticated stream')
    elapsed = time.monotonic() - t0
    check(elapsed >= AUTH_TIMEOUT * 0.75,
          'closed after %.1fs, before c2s_auth_timeout (%.0fs)' %
          (elapsed, AUTH_TIMEOUT))
    # authenticated sessions are not subject to it
    pvtest.message_round_trip(a, b)


@suite.test
def byte_rate_limit():
    srv = limits_server()
    a = srv.login('alice', resource='rate-bystander')
    b = srv.login('bob', resource='rate-bystander', tls='direct')
    c = srv.login('mallory', resource='flood')
    # 64 KiB at once against "2K" per second: results to the server are
    # dropped silently (RFC 6120 §8.2.3), so only the rate is at stake
    pad = 'z' * 900
    burst = ''.join("<iq type='result' id='r%d' to='localhost'>"
                    "<x xmlns='urn:example:pad'>%s</x></iq>" % (i, pad)
                    for i in range(64))
    try:
        c.send(burst)
    except OSError:
        pass
    check_eq(c.expect_stream_error(15 * pvtest.time_factor()),
             'policy-violation', 'stream error for a byte flood')
    pvtest.message_round_trip(a, b)


@suite.test
def failed_auth_throttling():
    srv = suite.shared_server('throttle', users=USERS,
                              auth_failure_limit=FAIL_LIMIT,
                              auth_failure_window='%ds' % FAIL_WINDOW)
    # the attacker comes from 127.0.0.2; 127.0.0.1 must stay unaffected
    for i in range(FAIL_LIMIT):
        c = srv.client(source='127.0.0.2')
        c.connect()
        check_eq(c.auth('mallory', 'wrong-%d' % i), 'not-authorized',
                 'failed attempt %d' % (i + 1))
        c.close()
    t_last = time.monotonic()
    c = srv.client(source='127.0.0.2')
    c.connect()
    check_eq(c.auth('mallory', USERS['mallory']), 'temporary-auth-failure',
             'correct password after %d failures' % FAIL_LIMIT)
    c.close()
    other = srv.login('alice', resource='other-address')
    other.close()
    # after the window the right password works again
    deadline = t_last + (FAIL_WINDOW + 6) * pvtest.time_factor()
    while True:
        c = srv.client(source='127.0.0.2')
        c.connect()
        cond = c.auth('mallory', USERS['mallory'])
        c.close()
        if cond is None:
            break
        check_eq(cond, 'temporary-auth-failure', 'while throttled')
        check(time.monotonic() < deadline,
              'still throttled %.0fs after the last failure (window %ds)'
              % (time.monotonic() - t_last, FAIL_WINDOW))
        time.sleep(0.5)   # polling the window, not waiting for readiness


# --------------------------------------------------------------------------
# connection counts, stanza rate, attributes, "off"

PER_IP = 3
MAX_CONNS = 4
STANZA_RATE = 20      # per second; the bucket holds two seconds' worth
MAX_ATTRS = 8
PING = ("<iq type='get' id='%s' to='localhost'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>")


def stream_error(c, timeout=None):
    """(condition, text) of the <stream:error/> that ends c's stream; the
    server must close the connection after it."""
    el = c.recv_until(lambda e: e.tag == '{%s}error' % pvtest.NS_STREAMS,
                      timeout, what='<stream:error/>')
    cond = text = None
    for ch in el:
        if not ch.tag.startswith('{%s}' % pvtest.NS_STREAM_ERR):
            continue
        if ch.tag.endswith('}text'):
            text = ch.text
        else:
            cond = ch.tag.split('}', 1)[1]
    check(c.wait_closed(5 * pvtest.time_factor()),
          'connection not closed after stream error %s' % cond)
    return cond, text


def open_stream(srv, source=None, tls='plain'):
    """A new stream (plain TCP on the STARTTLS port, or direct TLS);
    returns (client, features), features None when the server answered
    the header with an error."""
    c = srv.client(tls=tls, source=source)
    return c, c.open_stream()


def refused(srv, source, tls, want, what):
    c, f = open_stream(srv, source, tls)
    check(f is None, '%s (%s): got stream features' % (what, tls))
    check_eq(stream_error(c)[0], want, 'stream error for %s (%s)' %
             (what, tls))


def wait_log(srv, text, timeout=None):
    deadline = time.monotonic() + (timeout or 10 * pvtest.time_factor())
    while text not in srv.log_text():
        check(time.monotonic() < deadline, 'no log line %r' % text)
        time.sleep(0.05)   # polling the log file


def wait_accepted(srv, source, what):
    """Opens streams from source until one is accepted again (the server
    sees a close asynchronously); fails after a deadline."""
    deadline = time.monotonic() + 10 * pvtest.time_factor()
    while True:
        c, f = open_stream(srv, source)
        if f is not None:
            return c
        c.close()
        check(time.monotonic() < deadline,
              'no connection from %s accepted again after %s' %
              (source, what))
        time.sleep(0.05)   # polling for the close, not for readiness


def ping_all(c, n, prefix):
    """Sends n pings in one write; returns how many results came back
    before the stream ended (or all n)."""
    c.send(''.join(PING % ('%s%d' % (prefix, i)) for i in range(n)))
    got = 0
    while got < n:
        el = c.recv()
        if el.tag == '{%s}error' % pvtest.NS_STREAMS:
            c.pending.insert(0, el)
            break
        if el.tag == '{%s}iq' % pvtest.NS_CLIENT:
            check_eq(el.get('type'), 'result', 'answer to a ping')
            got += 1
    return got


@suite.test
def connections_per_ip():
    srv = suite.server(users=USERS, max_connections_per_ip=PER_IP)
    srv.start()
    held = []
    for i in range(PER_IP):
        c, f = open_stream(srv, '127.0.0.2', tls='direct' if i else 'plain')
        check(f is not None, 'connection %d of %d from one IP refused' %
              (i + 1, PER_IP))
        held.append(c)
    refused(srv, '127.0.0.2', 'plain', 'policy-violation',
            'connection %d from one IP' % (PER_IP + 1))
    refused(srv, '127.0.0.2', 'direct', 'policy-violation',
            'connection %d from one IP' % (PER_IP + 1))
    wait_log(srv, 'max_connections_per_ip (%d) reached' % PER_IP)
    # another address has its own PER_IP connections
    a = srv.login('alice', resource='other-ip')
    b = srv.login('bob', resource='other-ip', tls='direct')
    extra = [open_stream(srv, '127.0.0.1') for _ in range(PER_IP - 2)]
    check(all(f is not None for _, f in extra),
          'connection from 127.0.0.1 refused while 127.0.0.2 is full')
    pvtest.message_round_trip(a, b)
    # closing one connection frees its slot, and only that one
    held.pop(0).close()
    held.append(wait_accepted(srv, '127.0.0.2', 'closing one'))
    refused(srv, '127.0.0.2', 'plain', 'policy-violation',
            'connection %d from one IP after a slot was retaken'
            % (PER_IP + 1))
    pvtest.message_round_trip(a, b)
    for c in held + [a, b] + [c for c, _ in extra]:
        c.close()


@suite.test
def connections_total():
    srv = suite.server(users=USERS, max_connections=MAX_CONNS)
    srv.start()
    a = srv.login('alice', resource='total')
    b = srv.login('bob', resource='total', tls='direct')
    held = []
    for src in ('127.0.0.2', '127.0.0.3'):
        c, f = open_stream(srv, src)
        check(f is not None, 'connection from %s refused below %d' %
              (src, MAX_CONNS))
        held.append(c)
    refused(srv, '127.0.0.4', 'plain', 'resource-constraint',
            'connection %d in total' % (MAX_CONNS + 1))
    refused(srv, '127.0.0.1', 'direct', 'resource-constraint',
            'connection %d in total' % (MAX_CONNS + 1))
    wait_log(srv, 'max_connections (%d) reached' % MAX_CONNS)
    pvtest.message_round_trip(a, b)
    held.pop().close()
    held.append(wait_accepted(srv, '127.0.0.4', 'closing one'))
    refused(srv, '127.0.0.5', 'plain', 'resource-constraint',
            'connection %d in total after a slot was retaken'
            % (MAX_CONNS + 1))
    pvtest.message_round_trip(a, b)
    for c in held + [a, b]:
        c.close()


@suite.test
def stanza_rate():
    srv = suite.shared_server('stanza-rate', users=USERS,
                              c2s_stanza_rate=STANZA_RATE)
    a = srv.login('alice', resource='stanza-rate')
    b = srv.login('bob', resource='stanza-rate', tls='direct')
    m = srv.login('mallory', resource='stanza-flood')
    # a client at half the rate for longer than the bucket lasts is never
    # cut off, also while another session on the server floods
    n_polite = int(STANZA_RATE * 2.6)
    t0 = time.monotonic()
    for i in range(n_polite):
        if i == STANZA_RATE // 2:
            flood = ''.join(PING % ('f%d' % j)
                            for j in range(STANZA_RATE * 10))
            m.send(flood)
        r = a.iq(PING % ('polite%d' % i))
        check_eq(r.get('type'), 'result', 'answer to polite ping %d' % i)
        # pacing the polite client, not waiting for the server
        delay = t0 + (i + 1) * 2.0 / STANZA_RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    cond, text = stream_error(m)
    check_eq(cond, 'policy-violation', 'stream error for a stanza flood')
    check_eq(text, 'too many stanzas', 'text of the stream error')
    answered = sum(1 for e in m.received
                   if e.tag == '{%s}iq' % pvtest.NS_CLIENT)
    check(answered < STANZA_RATE * 10,
          'all %d flooded pings were answered' % answered)
    check(answered <= STANZA_RATE * 2 + 5,
          '%d pings answered, more than the bucket (%d) holds' %
          (answered, STANZA_RATE * 2))
    wait_log(srv, 'stream error policy-violation: too many stanzas')
    pvtest.message_round_trip(a, b)


@suite.test
def attribute_limit():
    # xml_max_attrs is the one XML limit test_hostile.py does not cover
    srv = suite.shared_server('attrs', users=USERS, xml_max_attrs=MAX_ATTRS)
    a = srv.login('alice', resource='attrs')
    b = srv.login('bob', resource='attrs', tls='direct')
    ok = srv.login('mallory', resource='attrs-ok')
    attrs = ' '.join("a%d='x'" % i for i in range(MAX_ATTRS - 1))
    r = ok.iq("<iq type='get' id='attrs-ok' to='localhost'>"
              "<ping xmlns='urn:xmpp:ping' %s/></iq>" % attrs)
    check_eq(r.get('type'), 'result', 'ping with %d attributes' %
             (MAX_ATTRS - 1))
    m = srv.login('mallory', resource='attrs-flood')
    attrs = ' '.join("a%d='x'" % i for i in range(MAX_ATTRS * 4))
    m.send("<message to='alice@localhost'><x xmlns='urn:example:a' %s/>"
           "</message>" % attrs)
    check_eq(stream_error(m)[0], 'policy-violation',
             'stream error for %d attributes' % (MAX_ATTRS * 4))
    # on the stanza element itself too
    m = srv.login('mallory', resource='attrs-top')
    m.send("<message to='alice@localhost' %s/>" % attrs)
    check_eq(stream_error(m)[0], 'policy-violation',
             'stream error for %d attributes on <message/>' % (MAX_ATTRS * 4))
    pvtest.message_round_trip(a, b)
    pvtest.message_round_trip(ok, a)


@suite.test
def limits_off():
    srv = suite.server(users=USERS, c2s_stanza_rate='off',
                       max_connections_per_ip='off')
    srv.start()
    # the default of max_connections_per_ip is 100
    held = []
    for i in range(110):
        c, f = open_stream(srv, '127.0.0.2')
        check(f is not None, 'connection %d from one IP refused with '
              'max_connections_per_ip = "off"' % (i + 1))
        held.append(c)
    # 1000 stanzas at once, 5 times the default c2s_stanza_rate bucket
    m = srv.login('mallory', resource='no-stanza-rate')
    got = ping_all(m, 1000, 'off')
    check_eq(got, 1000, 'pings answered with c2s_stanza_rate = "off"')
    r = m.iq(PING % 'after')
    check_eq(r.get('type'), 'result', 'ping after the burst')
    for c in held + [m]:
        c.close()


if __name__ == '__main__':
    suite.main()
