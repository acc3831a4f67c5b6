#!/usr/bin/python3
# XMPP over WebSocket (RFC 7395, src/websocket_c2s.c over src/c2s.c): a
# raw client (stdlib ssl + RFC 6455 framing by hand, tests/integration/
# http_client.py) logs in with SCRAM at /xmpp-websocket and talks to TCP
# clients; <open/>/<close/> framing, one element per message with its
# namespaces, ping/pong, fragments, the 1009 and 1003 closes, handshake
# refusals (no 'xmpp' subprotocol, version), channel binding only over
# https, the plain listener from loopback, stream errors, resource
# conflicts with TCP sessions, and the connection gauge of /metrics.

import hashlib
import os
import sys
import time
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import NS_CLIENT, NS_STREAMS, check, check_eq  # noqa: E402
import http_client as hc  # noqa: E402
from http_client import NS_FRAMING, WsClient, WsError  # noqa: E402

suite = pvtest.Suite('websocket')
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw', 'carol': 'car0l-pw'}
MAX_MESSAGE = 16 * 1024


def server():
    return hc.http_server(suite, users=USERS,
                          websocket_max_message='%dK' % (MAX_MESSAGE // 1024))


def ws_login(srv, user, resource, tls=True, mech='SCRAM-SHA-256'):
    w = WsClient(srv, tls=tls)
    w.login(user, USERS[user], resource=resource, mech=mech)
    return w


@suite.test
def login_scram_and_chat_with_tcp():
    srv = server()
    w = WsClient(srv)
    f = w.open_stream()
    check(f is not None, 'no features after <open/>')
    attrs = w.stream_attrs or {}
    check_eq(attrs.get('from'), srv.domain, '<open/> from')
    check_eq(attrs.get('version'), '1.0', '<open/> version')
    check(attrs.get('id'), '<open/> without id')
    check(f.find('{urn:ietf:params:xml:ns:xmpp-tls}starttls') is None,
          'STARTTLS offered over WebSocket')
    check('SCRAM-SHA-256' in w.mechanisms(), 'mechanisms %s' %
          w.mechanisms())
    check_eq(w.auth('alice', USERS['alice'], mech='SCRAM-SHA-256'), None,
             'SCRAM-SHA-256 over WebSocket')
    jid = w.bind('web')
    check_eq(jid, 'alice@%s/web' % srv.domain, 'bound JID')
    t = srv.login('bob', resource='tcp')
    for _ in range(3):
        pvtest.message_round_trip(w, t)
        pvtest.message_round_trip(t, w)
    # each message was one element with its namespaces declared: the
    # client parses every message on its own (http_client.WsClient)
    for text in w.messages:
        el = ET.fromstring(text)
        check(el.tag.startswith('{'), 'unqualified element %r' % text[:60])
    stanzas = [m for m in w.messages if m.startswith('<message')]
    check(stanzas and all("xmlns='jabber:client'" in m.split('>')[0]
                          for m in stanzas),
          'a stanza without xmlns=jabber:client: %r' % stanzas[:1])
    # an IQ to the server answers over the socket
    r = w.iq("<iq xmlns='jabber:client' type='get' id='png1'>"
             "<ping xmlns='urn:xmpp:ping'/></iq>")
    check_eq(r.get('type'), 'result', 'ping answer')
    w.close()
    t.close()


@suite.test
def ping_pong_and_fragments():
    srv = server()
    w = ws_login(srv, 'alice', 'pp')
    t = srv.login('bob', resource='pp')
    for payload in (b'', b'hello', bytes(range(125))):
        w.ping(payload)
        check(w.wait_pong(payload), 'no pong for %r' % payload[:10])
    # a stanza in three fragments with a ping between them
    body = 'fragmented-%d' % time.monotonic_ns()
    stanza = ("<message xmlns='jabber:client' to='%s' type='chat'>"
              "<body>%s</body></message>" % (t.jid, body)).encode()
    n = len(stanza) // 3
    w.send_frame(0x1, stanza[:n], fin=False)
    w.send_frame(0x0, stanza[n:2 * n], fin=False)
    w.ping(b'mid')
    w.send_frame(0x0, stanza[2 * n:], fin=True)
    check(w.wait_pong(b'mid'), 'no pong between fragments')
    m = t.recv_until(lambda e: e.tag == '{%s}message' % NS_CLIENT and
                     e.findtext('{%s}body' % NS_CLIENT) == body,
                     what='fragmented message')
    check_eq(m.get('from'), w.jid, 'from of the fragmented message')
    # whitespace keepalive messages are ignored
    w.send(' ')
    pvtest.message_round_trip(w, t)
    w.close()
    t.close()


@suite.test
def oversize_message_closes_1009():
    srv = server()
    w = ws_login(srv, 'alice', 'big')
    t = srv.login('bob', resource='big-bystander')
    w.send("<message xmlns='jabber:client' to='%s'><body>%s</body>"
           "</message>" % (t.jid, 'x' * (MAX_MESSAGE + 100)))
    check_eq(w.wait_close_frame(), 1009, 'close code for a big message')
    check(w.wait_closed(), 'connection open after 1009')
    # a fragmented message that grows too big, before its end
    w2 = ws_login(srv, 'alice', 'big2')
    for _ in range(5):
        w2.send_frame(0x1 if _ == 0 else 0x0, 'y' * 4096, fin=False)
    check_eq(w2.wait_close_frame(), 1009, 'close code, fragments')
    # others are unaffected; the session is gone
    w3 = ws_login(srv, 'alice', 'big3')
    pvtest.message_round_trip(w3, t)
    w3.close()
    t.close()


@suite.test
def binary_and_bad_frames():
    srv = server()
    w = ws_login(srv, 'alice', 'bin')
    w.send_frame(0x2, b'<presence/>')
    check_eq(w.wait_close_frame(), 1003, 'close code for binary')
    check(w.wait_closed(), 'open after binary')
    # an unmasked client frame is a protocol error (RFC 6455 §5.1)
    w = ws_login(srv, 'alice', 'unmasked')
    w.send_raw(hc.ws_frame(0x1, '<presence/>', mask=False))
    check_eq(w.wait_close_frame(), 1002, 'close code for unmasked')
    check(w.wait_closed(), 'open after unmasked frame')


@suite.test
def close_handshake():
    srv = server()
    w = ws_login(srv, 'alice', 'bye')
    w.send("<close xmlns='%s'/>" % NS_FRAMING)
    check_eq(w.wait_close_frame(), 1000, 'close code after <close/>')
    check(w.closed, 'no <close/> reply')
    check(w.wait_closed(), 'open after <close/>')
    # a WebSocket close frame is echoed
    w = ws_login(srv, 'alice', 'bye2')
    w.send_raw(hc.ws_frame(0x8, b'\x03\xe8done'))
    check_eq(w.wait_close_frame(), 1000, 'echoed close code')
    check(w.wait_closed(), 'open after close frame')


@suite.test
def stream_errors_are_framed():
    srv = server()
    w = WsClient(srv)
    w.open_stream(to='unknown.example')
    check_eq(w.expect_stream_error(), 'host-unknown', 'unknown host')
    check(w.closed, 'no <close/> after the stream error')
    err = [m for m in w.messages if 'stream:error' in m][0]
    check("xmlns:stream='%s'" % NS_STREAMS in err,
          'stream prefix not declared: %r' % err)
    w = ws_login(srv, 'alice', 'err')
    w.send("<message xmlns='jabber:client'><body>a</x></message>")
    check_eq(w.expect_stream_error(), 'not-well-formed', 'bad XML')
    w = WsClient(srv)
    w.send("<message xmlns='jabber:client'><body>early</body></message>")
    check_eq(w.expect_stream_error(), 'not-authorized',
             'stanza before <open/>')
    w = WsClient(srv)
    w.open_stream()
    w.send("<open xmlns='%s' to='%s' version='1.0'/>" % (NS_FRAMING,
                                                          srv.domain))
    check_eq(w.expect_stream_error(), 'policy-violation',
             '<open/> on an open stream')
    w = WsClient(srv)
    w.send("<!DOCTYPE x [<!ENTITY a 'b'>]><open xmlns='%s' to='%s' "
           "version='1.0'/>" % (NS_FRAMING, srv.domain))
    check(w.wait_closed(), 'DOCTYPE in <open/> accepted')
    w = WsClient(srv)
    w.open_stream()
    w.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    el = w.recv()
    check_eq(el.tag, '{urn:ietf:params:xml:ns:xmpp-tls}failure',
             'answer to <starttls/>')
    check(w.wait_closed(), 'open after <starttls/>')


@suite.test
def handshake_refusals():
    srv = server()
    for protos in ((), ('chat',), ('xmppp',)):
        try:
            WsClient(srv, protocols=protos)
        except WsError as e:
            check('400' in str(e), 'no subprotocol %s: %s' % (protos, e))
            continue
        pvtest.fail('upgrade accepted with protocols %s' % (protos,))
    # 'xmpp' among others is fine
    w = WsClient(srv, protocols=('chat', 'xmpp'))
    w.open_stream()
    w.close()
    c = hc.HttpConn(srv)
    r = c.request('GET', '/xmpp-websocket',
                  headers={'Upgrade': 'websocket', 'Connection': 'Upgrade',
                           'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
                           'Sec-WebSocket-Version': '8',
                           'Sec-WebSocket-Protocol': 'xmpp'})
    check_eq(r.status, 426, 'old WebSocket version')
    check_eq(r.header('sec-websocket-version'), '13', 'version offered')
    r = c.request('GET', '/xmpp-websocket')
    check_eq(r.status, 400, 'plain GET of the endpoint')
    r = c.request('POST', '/xmpp-websocket', body='x')
    check_eq(r.status, 405, 'POST to the endpoint')
    c.close()


def _server_cert_hash(w):
    der = w.tls_sock.getpeercert(binary_form=True)
    return hashlib.sha256(der).digest()


@suite.test
def channel_binding_only_over_https():
    srv = server()
    w = WsClient(srv)
    w.open_stream()
    check('SCRAM-SHA-256-PLUS' in w.mechanisms(),
          '-PLUS not offered over https: %s' % w.mechanisms())
    check_eq(w.auth('carol', USERS['carol'], mech='SCRAM-SHA-256-PLUS',
                    cb_type='tls-server-end-point',
                    cb_data=_server_cert_hash(w)), None,
             'SCRAM-SHA-256-PLUS with tls-server-end-point')
    w.bind('plus')
    w.close()
    # a wrong binding is refused
    w = WsClient(srv)
    w.open_stream()
    check(w.auth('carol', USERS['carol'], mech='SCRAM-SHA-256-PLUS',
                 cb_type='tls-server-end-point', cb_data=b'\0' * 32)
          is not None, 'a wrong channel binding was accepted')
    w.close()
    # plain http from loopback (a local TLS proxy): secure, no -PLUS
    w = WsClient(srv, tls=False)
    w.open_stream()
    mechs = w.mechanisms()
    check(mechs and not any(m.endswith('-PLUS') for m in mechs),
          'mechanisms over plain http: %s' % mechs)
    check_eq(w.auth('carol', USERS['carol'], mech='SCRAM-SHA-1'), None,
             'SCRAM-SHA-1 over plain http from loopback')
    w.bind('proxy')
    w.close()


@suite.test
def same_account_over_tcp_and_websocket():
    srv = server()
    w = ws_login(srv, 'alice', 'web')
    t = srv.login('alice', resource='phone')
    b = srv.login('bob', resource='desk')
    pvtest.message_round_trip(b, w)
    pvtest.message_round_trip(b, t)
    # the same full JID over TCP replaces the WebSocket session
    t2 = srv.login('alice', resource='web')
    check_eq(w.expect_stream_error(), 'conflict', 'old session replaced')
    check(w.close_code in (1000, None), 'close code %s' % w.close_code)
    pvtest.message_round_trip(b, t2)
    # and the other way round
    w2 = ws_login(srv, 'alice', 'phone')
    check_eq(t.expect_stream_error(), 'conflict', 'TCP session replaced')
    pvtest.message_round_trip(b, w2)
    for c in (w2, t2, b):
        c.close()


@suite.test
def metrics_count_websockets():
    srv = server()

    def gauge():
        s = hc.parse_prometheus(hc.http_get(srv, '/metrics').body.decode())
        return hc.metric(s, 'palaver_connections', kind='websocket')

    time.sleep(0.3)  # earlier tests' closes
    base = gauge()
    ws = [ws_login(srv, 'bob', 'g%d' % i) for i in range(3)]
    check_eq(gauge() - base, 3, 'websocket gauge with 3 more')
    for w in ws:
        w.send("<close xmlns='%s'/>" % NS_FRAMING)
        w.wait_closed()
    deadline = time.monotonic() + 5
    while gauge() != base and time.monotonic() < deadline:
        time.sleep(0.1)
    check_eq(gauge(), base, 'websocket gauge after closing')


@suite.test
def shutdown_reaches_websockets():
    srv = suite.server(name='ws-shutdown', users=USERS,
                       listen=hc.HTTP_LISTEN)
    srv.start()
    w = ws_login(srv, 'alice', 'sd')
    idle = hc.HttpConn(srv)   # a keep-alive HTTP connection
    check_eq(idle.request('GET', '/.well-known/host-meta').status, 200,
             'keep-alive request')
    rc = srv.stop()
    check_eq(rc, 0, 'exit code')
    check_eq(w.expect_stream_error(), 'system-shutdown', 'shutdown error')
    check(idle.closed_by_server(), 'HTTP connection left open')


if __name__ == '__main__':
    suite.main()
