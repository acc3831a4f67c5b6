#!/usr/bin/python3
# The HTTP server (src/http.c) on its https and http listeners:
# keep-alive and pipelining, HEAD, status codes (400, 404, 405, 408, 413,
# 431, 503, 505), CORS preflight, XEP-0156 host-meta in XML and JSON
# (WebSocket and BOSH links), connection limits, and
# /metrics: strict Prometheus text format 0.0.4, counters that move with
# traffic, and access control by address (http_metrics_allow, from a
# client bound to 127.0.0.2/3). WebSocket: test_websocket.py.

import json
import os
import socket
import sys
import time
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402
import http_client as hc  # noqa: E402
from http_client import HttpConn, metric  # noqa: E402

suite = pvtest.Suite('http')
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw'}
XRD = '{http://docs.oasis-open.org/ns/xri/xrd-1.0}'
WS_REL = 'urn:xmpp:alt-connections:websocket'
BOSH_REL = 'urn:xmpp:alt-connections:xbosh'


def server():
    return hc.http_server(suite, users=USERS,
                          modules=pvtest.available_modules(
                              pvtest.CORE_MODULES + ['private']),
                          http_max_request_size='2K',
                          http_max_header_size='2K')


@suite.test
def keep_alive_and_pipelining():
    srv = server()
    for tls in (True, False):
        c = HttpConn(srv, tls=tls)
        r1 = c.request('GET', '/.well-known/host-meta')
        r2 = c.request('GET', '/nowhere')
        r3 = c.request('HEAD', '/.well-known/host-meta.json')
        check_eq([r1.status, r2.status, r3.status], [200, 404, 200],
                 'three requests on one connection (tls=%s)' % tls)
        check(r1.header('connection') is None,
              'keep-alive response says Connection: %s'
              % r1.header('connection'))
        # two requests in one write come back in order
        c.send(('GET /.well-known/host-meta.json HTTP/1.1\r\nHost: %s\r\n'
                '\r\nGET /metrics/x HTTP/1.1\r\nHost: %s\r\n\r\n') %
               (srv.domain, srv.domain))
        a, b = c.read_response(), c.read_response()
        check_eq((a.status, b.status), (200, 404), 'pipelined answers')
        check(json.loads(a.body)['links'], 'pipelined JSON body')
        # Connection: close ends it after the answer
        r = c.request('GET', '/.well-known/host-meta',
                      headers={'Connection': 'close'})
        check_eq(r.status, 200, 'last request')
        check_eq(r.header('connection'), 'close', 'Connection header')
        check(c.closed_by_server(), 'connection left open after close')
        c.close()
    # HTTP/1.0 without keep-alive: one request, then closed
    c = HttpConn(srv, tls=True)
    c.send('GET /.well-known/host-meta HTTP/1.0\r\nHost: x\r\n\r\n')
    r = c.read_response()
    check_eq(r.status, 200, 'HTTP/1.0 request')
    check(c.closed_by_server(), 'HTTP/1.0 connection left open')
    c.close()


@suite.test
def head_matches_get():
    srv = server()
    c = HttpConn(srv)
    for path in ('/.well-known/host-meta', '/.well-known/host-meta.json',
                 '/metrics'):
        g = c.request('GET', path)
        h = c.request('HEAD', path)
        check_eq(h.status, g.status, 'HEAD status of %s' % path)
        check_eq(h.body, b'', 'HEAD body of %s' % path)
        check_eq(h.header('content-type'), g.header('content-type'),
                 'HEAD Content-Type of %s' % path)
        if path != '/metrics':  # its byte counts move between requests
            check_eq(h.header('content-length'), str(len(g.body)),
                     'HEAD Content-Length of %s' % path)
    # nothing stray after the HEAD answers: the connection still parses
    check_eq(c.request('GET', '/nowhere').status, 404, 'after HEADs')
    c.close()


@suite.test
def error_statuses():
    srv = server()
    cases = [
        ('GET /nothing/here HTTP/1.1\r\nHost: x\r\n\r\n', 404),
        ('POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx',
         405),
        ('DELETE /.well-known/host-meta HTTP/1.1\r\nHost: x\r\n\r\n', 405),
        ('GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n', 400),
        ('GET /a/%2e%2e/b HTTP/1.1\r\nHost: x\r\n\r\n', 400),
        ('GARBAGE\r\n\r\n', 400),
        ('GET / HTTP/2.0\r\nHost: x\r\n\r\n', 505),
        ('POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n'
         + 'x' * 4096, 413),
        ('GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n' %
         ('y' * 4096), 431),
        ('GET /.well-known/host-meta HTTP/1.1\r\nHost: <bad>\r\n\r\n', 400),
    ]
    for req, want in cases:
        c = HttpConn(srv)
        c.send(req)
        r = c.read_response()
        check_eq(r.status, want, 'answer to %r' % req[:50])
        if want == 405:
            allow = r.header('allow') or ''
            check('GET' in allow and 'HEAD' in allow,
                  '405 without a usable Allow: %r' % allow)
        if want in (413, 431, 505) or req.startswith('GARBAGE'):
            # RFC 9112 §9.6: a request that cannot be read to its end
            # ends the connection (a bad path does not)
            check_eq(r.header('connection'), 'close',
                     'Connection after %d' % want)
            check(c.closed_by_server(), 'open after %d' % want)
        c.close()
    # the server is still fine
    check_eq(hc.http_get(srv, '/.well-known/host-meta').status, 200,
             'after the bad requests')


@suite.test
def cors_preflight():
    srv = server()
    c = HttpConn(srv)
    r = c.request('OPTIONS', '/.well-known/host-meta',
                  headers={'Origin': 'https://app.example',
                           'Access-Control-Request-Method': 'GET',
                           'Access-Control-Request-Headers': 'X-Thing'})
    check_eq(r.status, 204, 'preflight status')
    check_eq(r.header('access-control-allow-origin'), '*', 'ACAO')
    check('GET' in (r.header('access-control-allow-methods') or ''),
          'Allow-Methods: %r' % r.header('access-control-allow-methods'))
    check_eq(r.header('access-control-allow-headers'), 'X-Thing',
             'Allow-Headers')
    # a route without CORS does not answer preflights
    r = c.request('OPTIONS', '/metrics',
                  headers={'Origin': 'https://app.example',
                           'Access-Control-Request-Method': 'GET'})
    check_eq(r.status, 405, 'preflight on /metrics')
    check(r.header('access-control-allow-origin') is None,
          '/metrics carries CORS headers')
    c.close()


@suite.test
def host_meta():
    srv = server()
    for tls, scheme in ((True, 'wss'), (False, 'ws')):
        r = hc.http_get(srv, '/.well-known/host-meta', tls=tls)
        check_eq(r.status, 200, 'host-meta status')
        check_eq(r.header('access-control-allow-origin'), '*',
                 'host-meta ACAO')
        check(r.header('content-type').startswith('application/xrd+xml'),
              'host-meta type %r' % r.header('content-type'))
        root = ET.fromstring(r.body)
        check_eq(root.tag, XRD + 'XRD', 'host-meta root')
        links = {l.get('rel'): l.get('href') for l in root.iter(XRD + 'Link')}
        check_eq(links.get(WS_REL), '%s://%s/xmpp-websocket' %
                 (scheme, srv.domain), 'websocket link (tls=%s)' % tls)
        check_eq(links.get(BOSH_REL), '%s://%s/http-bind' %
                 (scheme.replace('ws', 'http'), srv.domain),
                 'BOSH link (tls=%s)' % tls)
        r = hc.http_get(srv, '/.well-known/host-meta.json', tls=tls)
        check_eq(r.status, 200, 'host-meta.json status')
        check_eq(r.header('access-control-allow-origin'), '*',
                 'host-meta.json ACAO')
        check(r.header('content-type').startswith('application/json'),
              'host-meta.json type')
        doc = json.loads(r.body)
        links = {l['rel']: l['href'] for l in doc['links']}
        check_eq(links.get(WS_REL), '%s://%s/xmpp-websocket' %
                 (scheme, srv.domain), 'JSON websocket link')
        check_eq(links.get(BOSH_REL), '%s://%s/http-bind' %
                 (scheme.replace('ws', 'http'), srv.domain),
                 'JSON BOSH link')
    # behind a TLS proxy the public scheme is wss
    r = hc.http_get(srv, '/.well-known/host-meta.json', tls=False,
                    headers={'X-Forwarded-Proto': 'https'},
                    host='chat.example.org')
    check_eq(json.loads(r.body)['links'][0]['href'],
             'wss://chat.example.org/xmpp-websocket', 'proxied link')


def scrape(srv, **kw):
    r = hc.http_get(srv, '/metrics', **kw)
    check_eq(r.status, 200, '/metrics status')
    check(r.header('content-type').startswith('text/plain; version=0.0.4'),
          '/metrics type %r' % r.header('content-type'))
    return hc.parse_prometheus(r.body.decode())


@suite.test
def prometheus_parser_rejects_bad_text():
    # the parser used below must be able to fail
    good = '# TYPE a counter\na{x="1"} 2\n'
    hc.parse_prometheus(good)
    for bad in ('a 1\n', '# TYPE a counter\na{x=1} 2\n',
                '# TYPE a counter\na 1', '# TYPE a counter\na one\n',
                '# TYPE a counter\n# TYPE a gauge\na 1\n',
                '# TYPE a counter\na 1\na 2\n', '# TYPE 1a counter\n'):
        try:
            hc.parse_prometheus(bad)
        except pvtest.TestFailure:
            continue
        pvtest.fail('parser accepted %r' % bad)


@suite.test
def metrics_move_with_traffic():
    srv = server()
    before = scrape(srv)
    for name in ('palaver_connections', 'palaver_stanzas_in_total',
                 'palaver_stanzas_out_total', 'palaver_auth_failures_total',
                 'palaver_storage_commits_total',
                 'process_resident_memory_bytes'):
        check(any(k[0] == name for k in before), 'no %s' % name)
    check(metric(before, 'process_resident_memory_bytes') > 1 << 20,
          'RSS below 1 MiB')
    a = srv.login('alice', resource='m1')
    b = srv.login('bob', resource='m2', tls='direct')
    mid = scrape(srv)
    check(metric(mid, 'palaver_connections', kind='c2s') >= 2,
          'c2s connections gauge: %s' % metric(mid, 'palaver_connections',
                                               kind='c2s'))
    for i in range(3):
        pvtest.message_round_trip(a, b)
    # a private XML store (XEP-0049) is a storage commit
    r = a.iq("<iq type='set' id='p1'><query xmlns='jabber:iq:private'>"
             "<x xmlns='urn:test:metrics'>1</x></query></iq>")
    check_eq(r.get('type'), 'result', 'private storage set')
    bad = srv.client(tls='direct')
    bad.connect()
    check(bad.auth('alice', 'wrong-password') is not None,
          'wrong password accepted')
    bad.close()
    time.sleep(0.2)
    after = scrape(srv)
    d_in = (metric(after, 'palaver_stanzas_in_total', type='message') -
            metric(before, 'palaver_stanzas_in_total', type='message'))
    d_out = (metric(after, 'palaver_stanzas_out_total', type='message') -
             metric(before, 'palaver_stanzas_out_total', type='message'))
    check(d_in >= 6, 'messages in moved by %s, want >= 6' % d_in)
    check(d_out >= 6, 'messages out moved by %s, want >= 6' % d_out)
    check(metric(after, 'palaver_stanzas_in_total', type='iq') >
          metric(before, 'palaver_stanzas_in_total', type='iq'),
          'iq counter did not move')
    check_eq(metric(after, 'palaver_auth_failures_total') -
             metric(before, 'palaver_auth_failures_total'), 1,
             'auth failures')
    check(metric(after, 'palaver_storage_commits_total') >
          metric(before, 'palaver_storage_commits_total'),
          'storage commits did not move')
    check(metric(after, 'palaver_http_requests_total') >
          metric(before, 'palaver_http_requests_total'),
          'http requests did not move')
    # the commit latency histogram: cumulative buckets ending in +Inf,
    # count equal to +Inf, and it moved with the commits above
    buckets = sorted((float(dict(k[1])['le']), v) for k, v in after.items()
                     if k[0] == 'palaver_storage_commit_seconds_bucket'
                     and dict(k[1])['le'] != '+Inf')
    inf = metric(after, 'palaver_storage_commit_seconds_bucket', le='+Inf')
    check(len(buckets) >= 5, 'histogram buckets: %s' % buckets)
    check(all(buckets[i][1] <= buckets[i + 1][1]
              for i in range(len(buckets) - 1)) and buckets[-1][1] <= inf,
          'buckets not cumulative: %s' % buckets)
    check_eq(metric(after, 'palaver_storage_commit_seconds_count'), inf,
             'histogram count')
    check(inf > metric(before, 'palaver_storage_commit_seconds_bucket',
                       le='+Inf'), 'commit histogram did not move')
    check(metric(after, 'palaver_storage_commit_seconds_sum') > 0,
          'histogram sum')
    check(metric(after, 'palaver_storage_queue_depth') >= 0,
          'queue depth gauge')
    check(metric(after, 'palaver_connections', kind='s2s_in') == 0,
          's2s gauge')
    a.close()
    b.close()


@suite.test
def metrics_refused_elsewhere():
    srv = server()
    r = hc.http_get(srv, '/metrics', source='127.0.0.2')
    check_eq(r.status, 403, '/metrics from 127.0.0.2')
    check(b'palaver_' not in r.body, 'refused answer leaks metrics')
    r = hc.http_get(srv, '/.well-known/host-meta', source='127.0.0.2')
    check_eq(r.status, 200, 'host-meta from 127.0.0.2')
    # CIDR blocks, and the default entries gone when the list is set
    cidr = suite.server(name='http-cidr', listen=hc.HTTP_LISTEN,
                        http_metrics_allow=['127.0.0.2/31', '10.0.0.0/8'])
    cidr.start()
    check_eq(hc.http_get(cidr, '/metrics', source='127.0.0.3').status, 200,
             '/metrics from 127.0.0.3 in 127.0.0.2/31')
    check_eq(hc.http_get(cidr, '/metrics', source='127.0.0.2',
                         tls=False).status, 200, 'from 127.0.0.2 over http')
    check_eq(hc.http_get(cidr, '/metrics', source='127.0.0.4').status, 403,
             '/metrics from 127.0.0.4')
    check_eq(hc.http_get(cidr, '/metrics').status, 403,
             '/metrics from 127.0.0.1 not in the list')


@suite.test
def request_timeout():
    srv = suite.server(name='http-timeout', listen=hc.HTTP_LISTEN,
                       http_request_timeout='1s')
    srv.start()
    # an unfinished request gets 408, then the connection closes
    c = HttpConn(srv)
    c.send('GET /metrics HTTP/1.1\r\nHost: x\r\n')
    t0 = time.monotonic()
    r = c.read_response()
    check_eq(r.status, 408, 'slow request')
    check(time.monotonic() - t0 >= 0.7, '408 came too early')
    check(c.closed_by_server(), 'open after 408')
    c.close()
    # an idle keep-alive connection is closed without a word
    c = HttpConn(srv, tls=False)
    check_eq(c.request('GET', '/.well-known/host-meta').status, 200,
             'first request')
    check(c.closed_by_server(10 * pvtest.time_factor()),
          'idle connection not closed')
    check_eq(c.buf, b'', 'bytes sent on an idle close')
    c.close()
    # a connection that never speaks
    s = socket.create_connection((srv.host('http'), srv.port('http')))
    s.settimeout(10 * pvtest.time_factor())
    check_eq(s.recv(100), b'', 'silent connection')
    s.close()


@suite.test
def expect_continue():
    srv = server()
    c = HttpConn(srv)
    c.send('POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n'
           'Expect: 100-continue\r\n\r\n')
    r = c.read_response()
    check_eq(r.status, 100, 'interim answer')
    c.send('hello')
    check_eq(c.read_response().status, 405, 'final answer')
    c.close()


@suite.test
def connection_limits():
    srv = suite.server(name='http-limits', listen=hc.HTTP_LISTEN,
                       users=USERS, max_connections_per_ip=3)
    srv.start()
    conns = [HttpConn(srv, tls=(i % 2 == 0)) for i in range(3)]
    for c in conns:
        check_eq(c.request('GET', '/.well-known/host-meta').status, 200,
                 'connection within the limit')
    extra = HttpConn(srv)
    r = extra.request('GET', '/.well-known/host-meta')
    check_eq(r.status, 503, 'connection over max_connections_per_ip')
    check(extra.closed_by_server(), 'open after 503')
    extra.close()
    # XMPP streams share the count
    x = srv.client(tls='direct')
    check_eq(x.connect(), None, 'stream over the limit got features')
    check_eq(x.recv().tag.split('}')[1], 'error', 'stream error')
    x.close()
    conns.pop().close()
    time.sleep(0.3)
    c = HttpConn(srv)
    check_eq(c.request('GET', '/.well-known/host-meta').status, 200,
             'a slot freed by a close')
    c.close()
    for c in conns:
        c.close()


if __name__ == '__main__':
    suite.main()
