#!/usr/bin/python3
# XEP-0363 HTTP File Upload (modules/mod_http_upload.c on upload.localhost,
# the streaming file side of src/http.c): disco form, slots, a 20 MiB
# upload over HTTPS downloaded by another user with the same SHA-256,
# Range (206/416), HEAD, file-too-large, wrong/missing token (403), a
# second PUT (409), size mismatch, '..' and %2F paths, RSS bounded during
# a 64 MiB upload, quota, CORS preflight, account deletion removing the
# file, the token secret surviving a restart, expiry. Client side:
# Python's http.client over ssl, connecting to 127.0.0.1 with the URL's
# Host and SNI.

import hashlib
import http.client
import os
import re
import socket
import ssl
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402
import http_client as hc  # noqa: E402

suite = pvtest.Suite('upload')
NS = 'urn:xmpp:http:upload:0'
NS_C = 'jabber:client'
NS_ST = 'urn:ietf:params:xml:ns:xmpp-stanzas'
USERS = {u: u + '-pw' for u in ('alice', 'bob', 'carol', 'dave', 'erin',
                                'frank', 'quota')}
MAX = 80 * 1024 * 1024
FILES = {}      # uploads later tests reuse
MIB = 1024 * 1024


def server():
    return hc.http_server(suite, users=USERS,
                          modules=pvtest.available_modules(
                              pvtest.CORE_MODULES + ['http_upload']),
                          http_upload_max_size='80M',
                          http_upload_quota='100M')


def updomain(srv):
    return 'upload.' + srv.domain


class Conn(http.client.HTTPSConnection):
    """HTTPS to the test server's 127.0.0.1 listener, with the URL's
    host name as SNI and Host (no DNS for upload.localhost)."""

    def __init__(self, srv, url_host, port, timeout=None):
        ctx = ssl.create_default_context(cafile=srv.cafile)
        super().__init__(url_host, port, context=ctx,
                         timeout=timeout or 30 * pvtest.time_factor())
        self._srv = srv

    def connect(self):
        sock = socket.create_connection(('127.0.0.1', self.port),
                                        self.timeout)
        self.sock = self._context.wrap_socket(sock,
                                              server_hostname=self.host)


def http(srv, method, url, body=None, headers=None, read=True):
    u = urllib.parse.urlsplit(url)
    check_eq(u.scheme, 'https', 'URL scheme of %s' % url)
    c = Conn(srv, u.hostname, u.port)
    path = u.path + ('?' + u.query if u.query else '')
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read() if read else None
    c.close()
    return r, data


def slot_iq(cl, srv, filename, size, ctype=None):
    attrs = "filename='%s' size='%d'" % (filename, size)
    if ctype:
        attrs += " content-type='%s'" % ctype
    return cl.iq("<iq type='get' id='s%d' to='%s'><request xmlns='%s' %s/>"
                 "</iq>" % (size, updomain(srv), NS, attrs))


def slot(cl, srv, filename, size, ctype=None):
    r = slot_iq(cl, srv, filename, size, ctype)
    check_eq(r.get('type'), 'result', 'slot request: %s' % pvtest.tostr(r))
    s = r.find('{%s}slot' % NS)
    check(s is not None, 'no <slot/> in %s' % pvtest.tostr(r))
    put = s.find('{%s}put' % NS).get('url')
    get = s.find('{%s}get' % NS).get('url')
    check(put.startswith('https://%s:%d/upload/' %
                         (updomain(srv), srv.port('https'))),
          'put URL %s' % put)
    return put, get


def upload(srv, user, filename, data, ctype='application/octet-stream'):
    cl = srv.login(user)
    try:
        put, get = slot(cl, srv, filename, len(data), ctype)
    finally:
        cl.close()
    r, _ = http(srv, 'PUT', put, body=data,
                headers={'Content-Type': ctype})
    check_eq(r.status, 201, 'PUT status')
    return put, get


def file_id(url):
    return urllib.parse.urlsplit(url).path.split('/')[2]


def vm(pid):
    out = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            m = re.match(r'(VmRSS|VmHWM):\s+(\d+) kB', line)
            if m:
                out[m.group(1)] = int(m.group(2)) * 1024
    return out


@suite.test
def disco_advertises_limit():
    srv = server()
    cl = srv.login('alice')
    r = cl.iq("<iq type='get' id='d1' to='%s'><query xmlns='http://jabber"
              ".org/protocol/disco#info'/></iq>" % updomain(srv))
    check_eq(r.get('type'), 'result', 'disco#info')
    q = r.find('{http://jabber.org/protocol/disco#info}query')
    feats = [f.get('var') for f in
             q.findall('{http://jabber.org/protocol/disco#info}feature')]
    check(NS in feats, 'feature %s missing: %s' % (NS, feats))
    ident = q.find('{http://jabber.org/protocol/disco#info}identity')
    check_eq((ident.get('category'), ident.get('type')), ('store', 'file'),
             'identity')
    fields = {}
    for f in q.iter('{jabber:x:data}field'):
        fields[f.get('var')] = f.find('{jabber:x:data}value').text
    check_eq(fields.get('FORM_TYPE'), NS, 'FORM_TYPE')
    check_eq(fields.get('max-file-size'), str(MAX), 'max-file-size')
    # the vhost lists the component
    r = cl.iq("<iq type='get' id='d2' to='%s'><query xmlns='http://jabber"
              ".org/protocol/disco#items'/></iq>" % srv.domain)
    jids = [i.get('jid') for i in r.iter(
        '{http://jabber.org/protocol/disco#items}item')]
    check(updomain(srv) in jids, 'disco#items of the vhost: %s' % jids)
    cl.close()


@suite.test
def upload_20mib_and_download():
    srv = server()
    data = os.urandom(20 * MIB)
    put, get = upload(srv, 'alice', 'holiday photo é.bin', data,
                      'image/jpeg')
    check(urllib.parse.unquote(get).endswith('/holiday photo é.bin'),
          'GET URL keeps the name: %s' % get)
    check('token=' not in get, 'GET URL carries the token: %s' % get)
    # bob (another user) downloads it
    r, body = http(srv, 'GET', get)
    check_eq(r.status, 200, 'GET status')
    check_eq(r.getheader('Content-Type'), 'image/jpeg', 'Content-Type')
    check_eq(int(r.getheader('Content-Length')), len(data),
             'Content-Length')
    check_eq(hashlib.sha256(body).hexdigest(),
             hashlib.sha256(data).hexdigest(), 'SHA-256 of the download')
    check_eq(r.getheader('Access-Control-Allow-Origin'), '*', 'CORS on GET')
    # stored under a generated name, not the user's
    fid = file_id(get)
    path = os.path.join(srv.data_dir, 'upload', fid)
    check_eq(os.path.getsize(path), len(data), 'file on disk')
    check(not [n for n in os.listdir(os.path.join(srv.data_dir, 'upload'))
               if 'holiday' in n], 'original name used on disk')
    FILES['big'] = (get, data)


def big(srv):
    if 'big' not in FILES:
        data = os.urandom(256 * 1024)
        _, get = upload(srv, 'alice', 'small.bin', data)
        FILES['big'] = (get, data)
    return FILES['big']


@suite.test
def range_requests():
    srv = server()
    get, data = big(srv)
    r, body = http(srv, 'GET', get, headers={'Range': 'bytes=1000-1999'})
    check_eq(r.status, 206, 'Range status')
    check_eq(body, data[1000:2000], 'Range bytes')
    check_eq(r.getheader('Content-Range'), 'bytes 1000-1999/%d' % len(data),
             'Content-Range')
    r, body = http(srv, 'GET', get, headers={'Range': 'bytes=-100'})
    check_eq((r.status, body), (206, data[-100:]), 'suffix range')
    off = len(data) - 70000
    r, body = http(srv, 'GET', get, headers={'Range': 'bytes=%d-' % off})
    check_eq((r.status, len(body)), (206, 70000), 'open range')
    check(body == data[off:], 'open range bytes')
    r, body = http(srv, 'GET', get,
                   headers={'Range': 'bytes=%d-' % (len(data) + 5)})
    check_eq(r.status, 416, 'unsatisfiable range')
    check_eq(r.getheader('Content-Range'), 'bytes */%d' % len(data),
             '416 Content-Range')


@suite.test
def head_request():
    srv = server()
    get, data = big(srv)
    r, body = http(srv, 'HEAD', get)
    check_eq(r.status, 200, 'HEAD status')
    check_eq(int(r.getheader('Content-Length')), len(data),
             'HEAD Content-Length')
    check_eq(body, b'', 'HEAD body')
    r, _ = http(srv, 'GET', get[:-3] + 'xyz')
    check_eq(r.status, 404, 'GET with another file name')


@suite.test
def oversize_slot():
    srv = server()
    cl = srv.login('bob')
    r = slot_iq(cl, srv, 'huge.iso', MAX + 1)
    check_eq(r.get('type'), 'error', 'oversize answer')
    err = r.find('{%s}error' % NS_C)
    check_eq(err.get('type'), 'modify', 'error type')
    check(err.find('{%s}not-acceptable' % NS_ST) is not None,
          'not-acceptable missing: %s' % pvtest.tostr(r))
    ftl = err.find('{%s}file-too-large' % NS)
    check(ftl is not None, 'file-too-large missing')
    check_eq(ftl.find('{%s}max-file-size' % NS).text, str(MAX),
             'max-file-size')
    # bad requests
    r = cl.iq("<iq type='get' id='b1' to='%s'><request xmlns='%s' "
              "filename='x' size='abc'/></iq>" % (updomain(srv), NS))
    check_eq(r.get('type'), 'error', 'bad size')
    cl.close()


@suite.test
def wrong_token_and_reuse():
    srv = server()
    cl = srv.login('bob')
    data = b'hello world\n' * 100
    put, get = slot(cl, srv, 'note.txt', len(data), 'text/plain')
    cl.close()
    bad = put[:-4] + ('0000' if not put.endswith('0000') else '1111')
    r, _ = http(srv, 'PUT', bad, body=data,
                headers={'Content-Type': 'text/plain'})
    check_eq(r.status, 403, 'PUT with a wrong token')
    r, _ = http(srv, 'PUT', put.split('?')[0], body=data,
                headers={'Content-Type': 'text/plain'})
    check_eq(r.status, 403, 'PUT without a token')
    r, _ = http(srv, 'GET', get)
    check_eq(r.status, 404, 'GET before the upload')
    r, _ = http(srv, 'PUT', put, body=data[:-1],
                headers={'Content-Type': 'text/plain'})
    check_eq(r.status, 400, 'PUT of the wrong size')
    r, _ = http(srv, 'PUT', put, body=data,
                headers={'Content-Type': 'text/plain'})
    check_eq(r.status, 201, 'PUT with the right token')
    r, _ = http(srv, 'PUT', put, body=b'x' * len(data),
                headers={'Content-Type': 'text/plain'})
    check(r.status in (403, 409), 'second PUT got %d' % r.status)
    r, body = http(srv, 'GET', get)
    check_eq((r.status, body), (200, data), 'file after the second PUT')
    # a too large Content-Length is refused before the body (413)
    cl = srv.login('bob')
    put, get = slot(cl, srv, 'n2.txt', 100, 'text/plain')
    cl.close()
    u = urllib.parse.urlsplit(put)
    c = Conn(srv, u.hostname, u.port)
    c.putrequest('PUT', u.path + '?' + u.query)
    c.putheader('Content-Length', str(10 * MIB))
    c.putheader('Content-Type', 'text/plain')
    c.endheaders()
    r = c.getresponse()
    check_eq(r.status, 413, 'Content-Length above the slot size')
    c.close()


@suite.test
def chunked_keep_alive_and_interrupted():
    srv = server()
    cl = srv.login('bob')
    data = os.urandom(300000)
    put, get = slot(cl, srv, 'chunked.bin', len(data))
    put2, get2 = slot(cl, srv, 'over.bin', 1000)
    put3, get3 = slot(cl, srv, 'cut.bin', 2 * MIB)
    cl.close()
    # a chunked PUT, then GET and HEAD on the same connection
    u = urllib.parse.urlsplit(put)
    c = Conn(srv, u.hostname, u.port)
    c.request('PUT', u.path + '?' + u.query,
              body=(data[i:i + 70000] for i in range(0, len(data), 70000)),
              headers={'Content-Type': 'application/octet-stream'},
              encode_chunked=True)
    r = c.getresponse()
    r.read()
    check_eq(r.status, 201, 'chunked PUT')
    for method in ('GET', 'HEAD', 'GET'):
        c.request(method, urllib.parse.urlsplit(get).path)
        r = c.getresponse()
        body = r.read()
        check_eq(r.status, 200, '%s on the kept-alive connection' % method)
        check_eq(body, data if method == 'GET' else b'', '%s body' % method)
    c.close()
    # a chunked body larger than the slot: 413
    u = urllib.parse.urlsplit(put2)
    c = Conn(srv, u.hostname, u.port)
    try:
        c.request('PUT', u.path + '?' + u.query,
                  body=iter([b'x' * 800, b'y' * 800]), encode_chunked=True)
        status = c.getresponse().status
    except (BrokenPipeError, ConnectionResetError):
        status = 'reset'
    c.close()
    check(status in (413, 'reset'), 'chunked over the slot size: %s'
          % status)
    r, _ = http(srv, 'GET', get2)
    check_eq(r.status, 404, 'refused upload is not served')
    # a client that goes away halfway leaves nothing; the slot still works
    u = urllib.parse.urlsplit(put3)
    c = Conn(srv, u.hostname, u.port)
    c.putrequest('PUT', u.path + '?' + u.query)
    c.putheader('Content-Length', str(2 * MIB))
    c.endheaders()
    c.send(b'z' * MIB)
    time.sleep(0.3)
    c.close()
    updir = os.path.join(srv.data_dir, 'upload')
    deadline = time.monotonic() + 5 * pvtest.time_factor()
    while (time.monotonic() < deadline and
           [n for n in os.listdir(updir) if n.endswith('.part')]):
        time.sleep(0.1)
    check_eq([n for n in os.listdir(updir) if n.endswith('.part')], [],
             'partial files left')
    r, _ = http(srv, 'GET', get3)
    check_eq(r.status, 404, 'interrupted upload is not served')
    data3 = os.urandom(2 * MIB)
    r, _ = http(srv, 'PUT', put3, body=data3)
    check_eq(r.status, 201, 'PUT again after an interrupted one')
    r, body = http(srv, 'GET', get3)
    check_eq((r.status, body), (200, data3), 'retried upload')


@suite.test
def path_escapes_refused():
    srv = server()
    get, _ = big(srv)
    u = urllib.parse.urlsplit(get)
    base = 'https://%s:%d' % (u.hostname, u.port)
    fid = file_id(get)
    for p in ('/upload/../data.mdb', '/upload/%s/../../data.mdb' % fid,
              '/upload/%2e%2e/data.mdb', '/upload/%s/..%%2Fdata.mdb' % fid,
              '/upload/..%2F..%2Fdata.mdb', '/upload/%s/%%2e%%2e' % fid):
        for method in ('GET', 'PUT'):
            r, body = http(srv, method, base + p,
                           body=b'x' if method == 'PUT' else None)
            check(r.status in (400, 403, 404),
                  '%s %s got %d' % (method, p, r.status))
            check(b'MDB' not in (body or b''), 'store leaked by %s' % p)
    check(os.path.getsize(os.path.join(srv.data_dir, 'data.mdb')) > 0,
          'data.mdb intact')


def asan():
    try:
        with open(pvtest.palaverd_path(), 'rb') as f:
            return b'__asan_init' in f.read()
    except OSError:
        return False


@suite.test
def rss_bounded_during_64mib_upload():
    # a server of its own: under ASan, the quarantine (256 MiB by default)
    # keeps freed memory resident, which would hide what we measure
    srv = suite.server(users=USERS, listen=hc.HTTP_LISTEN,
                       modules=pvtest.available_modules(
                           pvtest.CORE_MODULES + ['http_upload']),
                       http_upload_max_size='80M')
    if asan():
        opts = os.environ.get('ASAN_OPTIONS', '')
        srv.extra_env['ASAN_OPTIONS'] = ((opts + ':' if opts else '') +
                                         'quarantine_size_mb=4')
    srv.start()
    size = 64 * MIB
    cl = srv.login('carol')
    put, get = slot(cl, srv, 'video.mp4', size, 'video/mp4')
    cl.close()
    pid = srv.proc.pid
    before = vm(pid)
    u = urllib.parse.urlsplit(put)
    c = Conn(srv, u.hostname, u.port)
    c.putrequest('PUT', u.path + '?' + u.query)
    c.putheader('Content-Length', str(size))
    c.putheader('Content-Type', 'video/mp4')
    c.endheaders()
    h = hashlib.sha256()
    chunk = os.urandom(MIB)
    peak = 0
    for i in range(64):
        block = bytes([i]) + chunk[1:]
        h.update(block)
        c.send(block)
        if i % 8 == 7:
            peak = max(peak, vm(pid)['VmRSS'])
    r = c.getresponse()
    r.read()
    c.close()
    check_eq(r.status, 201, 'PUT of 64 MiB')
    after = vm(pid)
    grow_rss = max(peak, after['VmRSS']) - before['VmRSS']
    grow_hwm = after['VmHWM'] - before['VmHWM']
    print('     RSS %d -> %d KiB (peak %d), HWM %d -> %d KiB' %
          (before['VmRSS'] // 1024, after['VmRSS'] // 1024, peak // 1024,
           before['VmHWM'] // 1024, after['VmHWM'] // 1024))
    check(grow_rss < size // 4, 'RSS grew by %d bytes during a %d-byte '
          'upload' % (grow_rss, size))
    check(grow_hwm < size // 4, 'VmHWM grew by %d bytes' % grow_hwm)
    # and it arrived whole: download and compare
    r, body = http(srv, 'GET', get)
    check_eq(r.status, 200, 'GET of 64 MiB')
    check_eq(hashlib.sha256(body).hexdigest(), h.hexdigest(), 'SHA-256')
    # the download is streamed too
    after2 = vm(pid)
    check(after2['VmHWM'] - before['VmHWM'] < size // 4,
          'VmHWM grew by %d bytes after the download' %
          (after2['VmHWM'] - before['VmHWM']))
    text = hc.http_get(srv, '/metrics', tls=False).body.decode()
    m = re.search(r'^palaver_http_upload_bytes_total (\d+)$', text, re.M)
    check(m is not None and int(m.group(1)) >= size,
          'upload bytes counter: %s' % (m and m.group(0)))


@suite.test
def quota():
    srv = server()
    cl = srv.login('quota')
    slot(cl, srv, 'a.bin', 60 * MIB)
    r = slot_iq(cl, srv, 'b.bin', 50 * MIB)
    check_eq(r.get('type'), 'error', 'slot over the quota')
    err = r.find('{%s}error' % NS_C)
    check(err.find('{%s}resource-constraint' % NS_ST) is not None,
          'resource-constraint: %s' % pvtest.tostr(r))
    check_eq(err.get('type'), 'wait', 'error type')
    slot(cl, srv, 'c.bin', 30 * MIB)      # still within 100M
    cl.close()


@suite.test
def cors_preflight():
    srv = server()
    cl = srv.login('erin')
    put, get = slot(cl, srv, 'cors.txt', 10, 'text/plain')
    cl.close()
    u = urllib.parse.urlsplit(put)
    for url, method in ((put, 'PUT'), (get, 'GET')):
        r, _ = http(srv, 'OPTIONS', url, headers={
            'Origin': 'https://web.example',
            'Access-Control-Request-Method': method,
            'Access-Control-Request-Headers': 'content-type'})
        check(r.status in (200, 204), 'preflight status %d' % r.status)
        check_eq(r.getheader('Access-Control-Allow-Origin'), '*', 'ACAO')
        meths = r.getheader('Access-Control-Allow-Methods') or ''
        check('PUT' in meths and 'GET' in meths, 'Allow-Methods %s' % meths)
        check('content-type' in
              (r.getheader('Access-Control-Allow-Headers') or '').lower(),
              'Allow-Headers')
    r, _ = http(srv, 'PUT', put, body=b'0123456789', headers={
        'Origin': 'https://web.example', 'Content-Type': 'text/plain'})
    check_eq(r.status, 201, 'PUT from a browser origin')
    check_eq(r.getheader('Access-Control-Allow-Origin'), '*', 'ACAO on PUT')
    del u


@suite.test
def account_deletion_removes_files():
    srv = server()
    data = os.urandom(5000)
    _, get = upload(srv, 'dave', 'doc.pdf', data, 'application/pdf')
    r, body = http(srv, 'GET', get)
    check_eq((r.status, body), (200, data), 'before deletion')
    path = os.path.join(srv.data_dir, 'upload', file_id(get))
    check(os.path.exists(path), 'file on disk')
    srv.ctl('deluser', 'dave@' + srv.domain)
    deadline = time.monotonic() + 5 * pvtest.time_factor()
    while True:
        r, _ = http(srv, 'GET', get)
        if r.status == 404 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check_eq(r.status, 404, 'GET after the account was deleted')
    check(not os.path.exists(path), 'file left on disk')


@suite.test
def token_survives_restart():
    srv = server()
    cl = srv.login('frank')
    data = b'persist' * 10
    put, get = slot(cl, srv, 'p.txt', len(data), 'text/plain')
    cl.close()
    srv.restart()
    # port 0 listeners move on a restart; the token does not bind them
    put, get = [re.sub(r':\d+/', ':%d/' % srv.port('https'), u, count=1)
                for u in (put, get)]
    r, _ = http(srv, 'PUT', put, body=data,
                headers={'Content-Type': 'text/plain'})
    check_eq(r.status, 201, 'PUT after a restart (same secret)')
    r, body = http(srv, 'GET', get)
    check_eq((r.status, body), (200, data), 'GET after restart')


@suite.test
def expiry():
    srv = hc.http_server(suite, key='expiry', users=USERS,
                         modules=pvtest.available_modules(
                             pvtest.CORE_MODULES + ['http_upload']),
                         http_upload_expire='2s')
    data = b'short-lived'
    _, get = upload(srv, 'alice', 'tmp.txt', data, 'text/plain')
    r, _ = http(srv, 'GET', get)
    check_eq(r.status, 200, 'GET right after the upload')
    deadline = time.monotonic() + 6 * pvtest.time_factor()
    while time.monotonic() < deadline:
        r, _ = http(srv, 'GET', get)
        if r.status == 404:
            break
        time.sleep(0.25)
    check_eq(r.status, 404, 'GET after http_upload_expire')
    check(not os.path.exists(os.path.join(srv.data_dir, 'upload',
                                          file_id(get))),
          'expired file left on disk')


if __name__ == '__main__':
    suite.main()
