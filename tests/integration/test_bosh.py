#!/usr/bin/python3
# XMPP over BOSH (XEP-0124, XEP-0206; src/bosh.c over src/c2s.c) at
# /http-bind: session creation attributes, SCRAM login with a stream
# restart, messages both ways with a TCP client through long polls, the
# wait timeout, hold=1 (a second request releases the first), request id
# checks and an overtaking request, unknown sessions, terminate, stream
# errors as terminate bodies, shutdown with a held request,
# malformed bodies, CORS, and the bosh gauge of /metrics. The client
# (http_client.BoshClient) is hand-written: two HTTP connections, as
# browser clients use.

import os
import sys
import time
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import NS_CLIENT, check, check_eq  # noqa: E402
import http_client as hc  # noqa: E402
from http_client import BoshClient, HttpConn, NS_HTTPBIND  # noqa: E402

suite = pvtest.Suite('bosh')
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw'}


def server():
    return hc.http_server(suite, users=USERS)


def bosh_login(srv, user, resource, **kw):
    c = BoshClient(srv, **kw)
    c.login(user, USERS[user], resource=resource, mech='SCRAM-SHA-256')
    return c


@suite.test
def session_creation():
    srv = server()
    c = BoshClient(srv, wait=5, hold=1)
    s = c.session
    check(s.get('sid') and len(s['sid']) >= 16, 'sid %r' % s.get('sid'))
    check_eq(s.get('wait'), '5', 'wait')
    check_eq(s.get('hold'), '1', 'hold')
    check_eq(s.get('requests'), '2', 'requests')
    check(int(s.get('inactivity', '0')) > 0, 'inactivity')
    check_eq(s.get('{%s}version' % hc.NS_XBOSH), '1.0', 'xmpp:version')
    check_eq(s.get('{%s}restartlogic' % hc.NS_XBOSH), 'true',
             'xmpp:restartlogic')
    check_eq(s.get('from'), srv.domain, 'from')
    check(c.features is not None, 'no features in the creation answer')
    check('SCRAM-SHA-256' in c.mechanisms(), 'mechanisms %s' %
          c.mechanisms())
    check(c.features.find('{urn:ietf:params:xml:ns:xmpp-tls}starttls')
          is None, 'STARTTLS offered over BOSH')
    c.close()
    # wait is capped, hold too
    c = BoshClient(srv, wait=3600, hold=5)
    check_eq(c.session.get('wait'), '60', 'wait capped')
    check_eq(c.session.get('hold'), '1', 'hold capped')
    c.close()


@suite.test
def login_and_chat_with_tcp():
    srv = server()
    b = bosh_login(srv, 'alice', 'browser')
    check_eq(b.jid, 'alice@%s/browser' % srv.domain, 'bound JID')
    t = srv.login('bob', resource='tcp')
    for _ in range(3):
        pvtest.message_round_trip(b, t)
        pvtest.message_round_trip(t, b)
    # stanzas in bodies carry their namespace
    for body in b.bodies:
        for child in body:
            check(not child.tag.startswith('{%s}' % NS_HTTPBIND),
                  'child in the httpbind namespace: %s' % child.tag)
    r = b.iq("<iq xmlns='jabber:client' type='get' id='bp1'>"
             "<ping xmlns='urn:xmpp:ping'/></iq>")
    check_eq(r.get('type'), 'result', 'ping over BOSH')
    check(b.terminate("<presence xmlns='jabber:client' "
                      "type='unavailable'/>"), 'terminate answered')
    check_eq(b.condition, None, 'terminate condition')
    b.close()
    t.close()


@suite.test
def long_poll_and_wait():
    srv = server()
    b = bosh_login(srv, 'alice', 'poll', wait=2)
    t = srv.login('bob', resource='poll')
    # an idle poll comes back empty after about wait seconds
    while b.pending:
        b.pending.pop()
    b.request()
    t0 = time.monotonic()
    r = b._wait(b.outstanding, 10 * pvtest.time_factor())
    check(r is not None, 'held request never answered')
    b.outstanding = None
    el = b._take(r)
    dt = time.monotonic() - t0
    check(1.5 <= dt <= 6 * pvtest.time_factor(),
          'empty answer after %.1fs, wait=2' % dt)
    check_eq(len(el), 0, 'empty answer has children')
    # a held poll is answered as soon as a message comes
    b.request()
    time.sleep(0.3)
    t.send("<message to='%s' type='chat'><body>wake</body></message>"
           % b.jid)
    t0 = time.monotonic()
    m = b.recv_until(lambda e: e.tag == '{%s}message' % NS_CLIENT,
                     what='pushed message')
    check_eq(m.findtext('{%s}body' % NS_CLIENT), 'wake', 'body')
    check(time.monotonic() - t0 < 1.5, 'message waited for the timeout')
    b.close()
    t.close()


@suite.test
def rid_checks_and_unknown_sessions():
    srv = server()
    b = bosh_login(srv, 'alice', 'rid')
    c = HttpConn(srv)
    # a skipped rid ends the session
    b.post(c, b.body_xml(rid=b.rid + 5))
    r = c.read_response('POST')
    el = ET.fromstring(r.body)
    check_eq((r.status, el.get('type'), el.get('condition')),
             (404, 'terminate', 'item-not-found'), 'rid out of order')
    b.post(c, b.body_xml())
    r = c.read_response('POST')
    check_eq(ET.fromstring(r.body).get('condition'), 'item-not-found',
             'session gone after a bad rid')
    # an unknown sid
    r = c.request('POST', '/http-bind',
                  body="<body xmlns='%s' rid='1' sid='nope'/>" % NS_HTTPBIND)
    check_eq(r.status, 404, 'unknown sid')
    c.close()
    b.close()
    # others are fine
    b2 = bosh_login(srv, 'alice', 'rid2')
    b2.close()


@suite.test
def overtaking_request_waits_for_its_turn():
    srv = server()
    b = bosh_login(srv, 'alice', 'order', wait=2)
    t = srv.login('bob', resource='order')
    c1, c2 = HttpConn(srv), HttpConn(srv)
    rid1, rid2 = b.next_rid(), b.next_rid()
    msg = ("<message xmlns='jabber:client' to='%s' type='chat'>"
           "<body>%s</body></message>")
    b.post(c2, b.body_xml(msg % (t.jid, 'second'), rid=rid2))
    time.sleep(0.3)
    b.post(c1, b.body_xml(msg % (t.jid, 'first'), rid=rid1))
    got = []
    while len(got) < 2:
        m = t.recv_until(lambda e: e.tag == '{%s}message' % NS_CLIENT,
                         what='reordered messages')
        got.append(m.findtext('{%s}body' % NS_CLIENT))
    check_eq(got, ['first', 'second'], 'order of delivery')
    for c in (c1, c2):
        r = c.read_response('POST')
        check_eq(r.status, 200, 'answer to a reordered request')
        check(ET.fromstring(r.body).get('type') is None,
              'reordered request terminated the session')
        c.close()
    pvtest.message_round_trip(b, t)
    b.close()
    t.close()


@suite.test
def malformed_bodies():
    srv = server()
    c = HttpConn(srv)
    for body in ("<body xmlns='urn:other' rid='1' to='localhost'/>",
                 "<body xmlns='%s' to='localhost'/>" % NS_HTTPBIND,
                 "<body xmlns='%s' rid='1'/>" % NS_HTTPBIND,
                 "<body xmlns='%s' rid='x' to='localhost'/>" % NS_HTTPBIND,
                 "<!DOCTYPE body [<!ENTITY a 'b'>]><body xmlns='%s' "
                 "rid='1' to='localhost'>&a;</body>" % NS_HTTPBIND,
                 "<body xmlns='%s' rid='1' to='localhost'>" % NS_HTTPBIND,
                 ""):
        r = c.request('POST', '/http-bind', body=body)
        check_eq(r.status, 400, 'answer to %r' % body[:50])
    r = c.request('GET', '/http-bind')
    check_eq(r.status, 405, 'GET /http-bind')
    r = c.request('OPTIONS', '/http-bind',
                  headers={'Origin': 'https://web.example',
                           'Access-Control-Request-Method': 'POST',
                           'Access-Control-Request-Headers':
                           'Content-Type'})
    check_eq(r.status, 204, 'CORS preflight')
    check_eq(r.header('access-control-allow-origin'), '*', 'ACAO')
    check('POST' in r.header('access-control-allow-methods'),
          'Allow-Methods')
    c.close()


@suite.test
def stream_errors_terminate():
    srv = server()
    b = BoshClient(srv, to='unknown.example', create=False)
    try:
        b.create(to='unknown.example')
    except pvtest.TestFailure as e:
        pvtest.fail('creation for an unknown host: %s' % e)
    check(b.terminated, 'unknown host did not terminate')
    check_eq(b.condition, 'remote-stream-error', 'condition')
    err = b.pending[0] if b.pending else None
    check(err is not None and err.tag == '{%s}error' % pvtest.NS_STREAMS,
          'no stream error child')
    check(err.find('{%s}host-unknown' % pvtest.NS_STREAM_ERR) is not None,
          'not host-unknown')
    b.close()
    # a stream error after login reaches the client in a terminate body
    b = bosh_login(srv, 'alice', 'bad-nonza')
    b.send("<whatever xmlns='urn:example:unknown'/>")
    check_eq(b.expect_stream_error(), 'unsupported-stanza-type',
             'unknown nonza')
    check_eq(b.condition, 'remote-stream-error', 'terminate condition')
    # a body that is not XML is refused without touching the session
    b = bosh_login(srv, 'alice', 'bad-xml')
    c = HttpConn(srv)
    b.post(c, b.body_xml("<message xmlns='jabber:client'><body>a</x>"))
    check_eq(c.read_response('POST').status, 400, 'malformed body')
    c.close()
    b.rid -= 1  # that rid was never accepted
    r = b.iq("<iq xmlns='jabber:client' type='get' id='after'>"
             "<ping xmlns='urn:xmpp:ping'/></iq>")
    check_eq(r.get('type'), 'result', 'session alive after a bad body')
    b.close()


@suite.test
def replaced_by_tcp_login():
    srv = server()
    b = bosh_login(srv, 'alice', 'same')
    t = srv.login('alice', resource='same')
    check_eq(b.expect_stream_error(), 'conflict', 'BOSH session replaced')
    check_eq(b.condition, 'remote-stream-error', 'terminate condition')
    u = srv.login('bob', resource='x')
    pvtest.message_round_trip(u, t)
    for c in (b, t, u):
        c.close()


@suite.test
def metrics_count_bosh():
    srv = server()

    def gauge():
        s = hc.parse_prometheus(hc.http_get(srv, '/metrics').body.decode())
        return hc.metric(s, 'palaver_connections', kind='bosh')

    time.sleep(0.3)
    base = gauge()
    bs = [bosh_login(srv, 'bob', 'g%d' % i) for i in range(2)]
    check_eq(gauge() - base, 2, 'bosh gauge with 2 more')
    for b in bs:
        b.terminate()
        b.close()
    time.sleep(0.3)
    check_eq(gauge(), base, 'bosh gauge after terminate')


@suite.test
def shutdown_with_held_requests():
    srv = suite.server(name='bosh-shutdown', users=USERS,
                       listen=hc.HTTP_LISTEN)
    srv.start()
    b = bosh_login(srv, 'alice', 'sd', wait=30)
    b.request()             # a long poll held by the server
    time.sleep(0.3)
    t0 = time.monotonic()
    check_eq(srv.stop(), 0, 'exit code with a held BOSH request')
    check(time.monotonic() - t0 < 10 * pvtest.time_factor(),
          'shutdown waited for the BOSH wait time')
    r = b._wait(b.outstanding, 5)
    if r is not None and r.status == 200:
        b._take(r)
        check(b.terminated, 'held request answered without terminate')
    b.close()


if __name__ == '__main__':
    suite.main()
