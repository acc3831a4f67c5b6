# Helpers for the HTTP tests (test_http.py, test_websocket.py): a server
# with http/https listeners, a raw HTTP/1.1 client with keep-alive over
# plain TCP or TLS, a strict parser of the Prometheus text format 0.0.4,
# and an XMPP-over-WebSocket client (RFC 6455 framing by hand, RFC 7395
# <open/>/<close/>) that behaves like pvtest.RawClient. Stdlib only.

import base64
import hashlib
import os
import re
import secrets
import socket
import ssl
import struct
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import TestFailure, check, check_eq  # noqa: E402

NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing'
WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

HTTP_LISTEN = [
    {'kind': 'c2s', 'address': '127.0.0.1', 'port': 0},
    {'kind': 'c2s_direct_tls', 'address': '127.0.0.1', 'port': 0},
    {'kind': 'http', 'address': '127.0.0.1', 'port': 0},
    {'kind': 'https', 'address': '127.0.0.1', 'port': 0},
]


def http_server(suite, key='http', **kw):
    """A shared palaverd with c2s and http/https listeners."""
    kw.setdefault('listen', HTTP_LISTEN)
    return suite.shared_server(key, **kw)


# --------------------------------------------------------------------------
# HTTP/1.1

class HttpResponse:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason = status, reason
        self.headers = headers          # lower-case name -> last value
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return '<HTTP %d %s %r>' % (self.status, self.reason,
                                    self.body[:80])


class HttpConn:
    """One keep-alive connection; request() may be called repeatedly."""

    def __init__(self, srv, tls=True, source=None, timeout=None):
        kind = 'https' if tls else 'http'
        self.host, self.port = srv.host(kind), srv.port(kind)
        self.timeout = timeout or 10 * pvtest.time_factor()
        src = (source, 0) if source else None
        self.sock = socket.create_connection((self.host, self.port),
                                             self.timeout,
                                             source_address=src)
        if tls:
            ctx = ssl.create_default_context(cafile=srv.cafile)
            ctx.set_alpn_protocols(['http/1.1'])
            self.sock = ctx.wrap_socket(self.sock,
                                        server_hostname=srv.domain)
        self.domain = srv.domain
        self.buf = b''
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def _fill(self):
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            data = b''
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_response(self, method='GET'):
        while b'\r\n\r\n' not in self.buf:
            if not self._fill():
                raise TestFailure('connection closed before a response '
                                  '(have %r)' % self.buf[:200])
        head, self.buf = self.buf.split(b'\r\n\r\n', 1)
        lines = head.decode('latin-1').split('\r\n')
        m = re.match(r'HTTP/1\.1 (\d{3}) ?(.*)$', lines[0])
        check(m is not None, 'bad status line %r' % lines[0])
        status = int(m.group(1))
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(':')
            headers[name.strip().lower()] = value.strip()
        body = b''
        if method == 'HEAD' or status in (101, 204, 304) or status < 200:
            pass
        elif 'content-length' in headers:
            n = int(headers['content-length'])
            while len(self.buf) < n:
                if not self._fill():
                    raise TestFailure('body cut short')
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b''
        return HttpResponse(status, m.group(2), headers, body)

    def request(self, method, path, headers=None, body=b'', host=None):
        hdrs = {'Host': host or self.domain}
        if body:
            hdrs['Content-Length'] = str(len(body))
        hdrs.update(headers or {})
        req = '%s %s HTTP/1.1\r\n' % (method, path)
        req += ''.join('%s: %s\r\n' % kv for kv in hdrs.items()) + '\r\n'
        self.send(req.encode() + (body if isinstance(body, bytes)
                                  else body.encode()))
        return self.read_response(method)

    def closed_by_server(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        except (socket.timeout, TimeoutError):
            return False
        return True


def http_get(srv, path, tls=True, source=None, **kw):
    c = HttpConn(srv, tls=tls, source=source)
    try:
        return c.request('GET', path, **kw)
    finally:
        c.close()


# --------------------------------------------------------------------------
# Prometheus text format 0.0.4

_NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*'
_TYPES = ('counter', 'gauge', 'histogram', 'summary', 'untyped')


def _parse_value(s, line):
    if s in ('+Inf', 'Inf'):
        return float('inf')
    if s == '-Inf':
        return float('-inf')
    if s == 'NaN':
        return float('nan')
    if not re.fullmatch(r'[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?', s):
        raise TestFailure('bad sample value %r in %r' % (s, line))
    return float(s)


def _family(name, types):
    if name in types:
        return name
    for suf in ('_bucket', '_count', '_sum'):
        if name.endswith(suf) and name[:-len(suf)] in types:
            return name[:-len(suf)]
    return None


def parse_prometheus(text):
    """Strictly parses exposition text; returns {(name, ((label, value),
    ...)): float}. Raises TestFailure on anything malformed: a sample
    before or without its TYPE, a TYPE given twice, bad names, bad label
    syntax or escapes, a bad value, duplicate series, a missing final
    newline."""
    if not text.endswith('\n'):
        raise TestFailure('exposition does not end with a newline')
    types, helps, samples = {}, set(), {}
    for line in text.split('\n')[:-1]:
        if line == '':
            continue
        if line.startswith('#'):
            m = re.fullmatch(r'# (HELP|TYPE) (%s) (.*)' % _NAME, line)
            if m is None:
                if line.startswith('# HELP') or line.startswith('# TYPE'):
                    raise TestFailure('bad metadata line %r' % line)
                continue
            kind, name, rest = m.groups()
            if kind == 'TYPE':
                if name in types:
                    raise TestFailure('TYPE of %s given twice' % name)
                if rest not in _TYPES:
                    raise TestFailure('unknown type in %r' % line)
                if any(_family(s[0], {name: 1}) for s in samples):
                    raise TestFailure('TYPE of %s after its samples' % name)
                types[name] = rest
            else:
                if name in helps:
                    raise TestFailure('HELP of %s given twice' % name)
                helps.add(name)
            continue
        m = re.match(r'(%s)(\{(.*)\})?[ \t]+(\S+)([ \t]+-?\d+)?$' % _NAME,
                     line)
        if m is None:
            raise TestFailure('bad sample line %r' % line)
        name, labels_text, value = m.group(1), m.group(3), m.group(4)
        labels = []
        if labels_text:
            pos = 0
            lm_re = re.compile(r'\s*(%s)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)'
                               % _LABEL)
            while pos < len(labels_text):
                lm = lm_re.match(labels_text, pos)
                if lm is None:
                    raise TestFailure('bad labels in %r' % line)
                v = re.sub(r'\\(.)', lambda x: {'n': '\n'}.get(
                    x.group(1), x.group(1)), lm.group(2))
                labels.append((lm.group(1), v))
                pos = lm.end()
        fam = _family(name, types)
        if fam is None:
            raise TestFailure('sample %s without a TYPE before it' % name)
        key = (name, tuple(sorted(labels)))
        if key in samples:
            raise TestFailure('duplicate series %r' % (key,))
        samples[key] = _parse_value(value, line)
    return samples


def metric(samples, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        raise TestFailure('no series %s%s in /metrics' % (name, labels))
    return samples[key]


# --------------------------------------------------------------------------
# WebSocket (RFC 6455 client side) + RFC 7395

def ws_frame(opcode, payload, fin=True, mask=True):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack('!BB', b0, mbit | n)
    elif n < 65536:
        head = struct.pack('!BBH', b0, mbit | 126, n)
    else:
        head = struct.pack('!BBQ', b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = secrets.token_bytes(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def ws_handshake_request(domain, key, protocols=('xmpp',), path=None,
                         extra=None):
    lines = ['GET %s HTTP/1.1' % (path or '/xmpp-websocket'),
             'Host: %s' % domain, 'Upgrade: websocket',
             'Connection: Upgrade', 'Sec-WebSocket-Key: %s' % key,
             'Sec-WebSocket-Version: 13', 'Origin: https://%s' % domain]
    if protocols:
        lines.append('Sec-WebSocket-Protocol: %s' % ', '.join(protocols))
    lines += extra or []
    return ('\r\n'.join(lines) + '\r\n\r\n').encode()


class WsError(Exception):
    pass


class WsClient(pvtest.RawClient):
    """XMPP over WebSocket with RawClient's interface (login, auth, bind,
    recv, recv_until, expect_stream_error, iq), so pvtest helpers such as
    message_round_trip work with it."""

    def __init__(self, srv, tls=True, protocols=('xmpp',), source=None,
                 timeout=None):
        kind = 'https' if tls else 'http'
        super().__init__(srv.host(kind), srv.port(kind), srv.domain,
                         cafile=srv.cafile,
                         tls='direct' if tls else 'plain', source=source,
                         timeout=timeout)
        self.wsbuf = b''
        self.frags = []
        self.frag_op = None
        self.pongs = []
        self.close_code = None
        self.close_frames = 0
        self.messages = []           # raw text of every message
        self.stream_attrs = None
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        self.send_raw(ws_handshake_request(srv.domain, key, protocols))
        head = b''
        while b'\r\n\r\n' not in head:
            self.sock.settimeout(self.timeout)
            d = self.sock.recv(4096)
            if not d:
                raise WsError('closed during the handshake: %r' % head)
            head += d
        head, self.wsbuf = head.split(b'\r\n\r\n', 1)
        lines = head.decode('latin-1').split('\r\n')
        self.handshake_status = int(lines[0].split()[1])
        self.handshake_headers = {}
        for line in lines[1:]:
            n, _, v = line.partition(':')
            self.handshake_headers[n.strip().lower()] = v.strip()
        if self.handshake_status != 101:
            raise WsError('handshake answered %d' % self.handshake_status)
        want = base64.b64encode(hashlib.sha1(
            (key + WS_GUID).encode()).digest()).decode()
        check_eq(self.handshake_headers.get('sec-websocket-accept'), want,
                 'Sec-WebSocket-Accept')
        check_eq(self.handshake_headers.get('sec-websocket-protocol'),
                 'xmpp', 'Sec-WebSocket-Protocol')
        self.parser = True

    def _ctx(self):
        ctx = ssl.create_default_context(cafile=self.cafile)
        ctx.set_alpn_protocols(['http/1.1'])
        return ctx

    # frames
    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, data):
        """One text message."""
        self.send_raw(ws_frame(0x1, data))

    def send_frame(self, opcode, payload, fin=True):
        self.send_raw(ws_frame(opcode, payload, fin=fin))

    def ping(self, payload=b'hello'):
        self.send_frame(0x9, payload)

    def _reset_parser(self):
        self.closed = False

    def _message(self, text):
        self.messages.append(text)
        el = ET.fromstring(text)
        if el.tag == '{%s}open' % NS_FRAMING:
            self.stream_attrs = dict(el.attrib)
        elif el.tag == '{%s}close' % NS_FRAMING:
            self.closed = True
        else:
            self.pending.append(el)
            self.received.append(el)

    def _frames(self):
        while True:
            b = self.wsbuf
            if len(b) < 2:
                return
            fin, op = b[0] & 0x80, b[0] & 0x0f
            if b[1] & 0x80:
                raise WsError('server frame is masked')
            n, pos = b[1] & 0x7f, 2
            if n == 126:
                if len(b) < 4:
                    return
                n, pos = struct.unpack('!H', b[2:4])[0], 4
            elif n == 127:
                if len(b) < 10:
                    return
                n, pos = struct.unpack('!Q', b[2:10])[0], 10
            if len(b) < pos + n:
                return
            payload, self.wsbuf = b[pos:pos + n], b[pos + n:]
            if op == 0x9:
                self.send_frame(0xA, payload)
            elif op == 0xA:
                self.pongs.append(payload)
            elif op == 0x8:
                self.close_frames += 1
                self.close_code = (struct.unpack('!H', payload[:2])[0]
                                   if len(payload) >= 2 else 1005)
                self.close_reason = payload[2:].decode('utf-8', 'replace')
            elif op in (0x1, 0x0):
                if op == 0x1:
                    self.frags = []
                self.frags.append(payload)
                if fin:
                    self._message(b''.join(self.frags).decode('utf-8'))
                    self.frags = []
            else:
                raise WsError('unexpected opcode %d' % op)

    def _feed(self, data):
        self.wsbuf += data
        self._frames()

    # RawClient overrides
    def open_stream(self, to=None, prefix=b'', header=None, lang='en'):
        self.closed = False
        if header is None:
            header = ("<open xmlns='%s' to='%s' version='1.0' "
                      "xml:lang='%s'/>" % (NS_FRAMING, to or self.domain,
                                           lang))
        self.send(header)
        el = self.recv()
        if el.tag == '{%s}features' % pvtest.NS_STREAMS:
            self.features = el
            return el
        self.pending.insert(0, el)
        return None

    def connect(self):
        return self.open_stream()

    def starttls(self):
        raise TestFailure('no STARTTLS over WebSocket')

    def wait_close_frame(self, timeout=None):
        """Waits for the server's close frame; returns its code."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while self.close_code is None and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._recv_some(left)
        return self.close_code

    def wait_pong(self, payload, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while payload not in self.pongs:
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return False
            self._recv_some(left)
        return True


# --------------------------------------------------------------------------
# BOSH (XEP-0124 / XEP-0206) with RawClient's interface

NS_HTTPBIND = 'http://jabber.org/protocol/httpbind'
NS_XBOSH = 'urn:xmpp:xbosh'


class BoshClient(pvtest.RawClient):
    """Two HTTP connections, at most one request held by the server at a
    time (hold=1), as browser clients do. send() posts one body; recv()
    long-polls when nothing is pending."""

    def __init__(self, srv, tls=True, wait=3, hold=1, to=None,
                 timeout=None, create=True):
        self.srv, self.use_tls = srv, tls
        self.domain = srv.domain
        self.timeout = timeout or 10 * pvtest.time_factor()
        self.conns = [HttpConn(srv, tls=tls), HttpConn(srv, tls=tls)]
        self.outstanding = None       # conn with an unanswered request
        self.rid = secrets.randbelow(1 << 40) + 1000
        self.pending, self.received = [], []
        self.bodies = []              # every response body element
        self.terminated = False
        self.condition = None
        self.closed = False
        self.eof = False
        self.jid = None
        self.features = None
        self.tls_sock = None
        self.sid = None
        self.session = None
        if create:
            self.create(wait=wait, hold=hold, to=to)

    def close(self):
        for c in self.conns:
            c.close()

    def next_rid(self):
        self.rid += 1
        return self.rid

    def body_xml(self, children='', attrs=None, rid=None):
        a = {'rid': str(rid if rid is not None else self.next_rid())}
        if self.sid:
            a['sid'] = self.sid
        a.update(attrs or {})
        text = ' '.join("%s='%s'" % kv for kv in a.items())
        return ("<body xmlns='%s' xmlns:xmpp='%s' %s>%s</body>" %
                (NS_HTTPBIND, NS_XBOSH, text, children))

    def post(self, conn, xml):
        body = xml.encode()
        conn.send(('POST /http-bind HTTP/1.1\r\nHost: %s\r\n'
                   'Content-Type: text/xml; charset=utf-8\r\n'
                   'Content-Length: %d\r\n\r\n' % (self.domain, len(body)))
                  .encode() + body)

    def _take(self, resp):
        check_eq(resp.status, 200, 'BOSH answer status (%r)' % resp.body)
        el = ET.fromstring(resp.body)
        check_eq(el.tag, '{%s}body' % NS_HTTPBIND, 'BOSH answer root')
        self.bodies.append(el)
        for child in list(el):
            self.pending.append(child)
            self.received.append(child)
        if el.get('type') == 'terminate':
            self.terminated = True
            self.closed = True
            self.condition = el.get('condition')
        return el

    def _wait(self, conn, timeout):
        conn.sock.settimeout(max(timeout, 0.001))
        try:
            return conn.read_response('POST')
        except (socket.timeout, TimeoutError):
            return None

    def create(self, wait=3, hold=1, to=None):
        c = self.conns[0]
        self.post(c, self.body_xml(attrs={
            'to': to or self.domain, 'wait': str(wait), 'hold': str(hold),
            'ver': '1.11', 'xmpp:version': '1.0', 'xml:lang': 'en',
            'content': 'text/xml; charset=utf-8'}))
        r = c.read_response('POST')
        self.create_status = r.status
        if r.status != 200:
            raise TestFailure('session creation: %d %r' % (r.status,
                                                           r.body))
        el = self._take(r)
        self.session = dict(el.attrib)
        self.sid = el.get('sid')
        if self.pending and self.pending[0].tag == \
                '{%s}features' % pvtest.NS_STREAMS:
            self.features = self.pending.pop(0)
        return el

    def request(self, children='', attrs=None, rid=None):
        """Posts one body on the free connection; the previously held
        request, if any, is answered now (hold=1) and read."""
        free = [c for c in self.conns if c is not self.outstanding][0]
        self.post(free, self.body_xml(children, attrs, rid))
        if self.outstanding is not None:
            r = self._wait(self.outstanding, self.timeout)
            if r is None:
                raise TestFailure('held request not released')
            self._take(r)
        self.outstanding = free

    def send(self, data):
        if isinstance(data, bytes):
            data = data.decode()
        self.request(data)

    def _recv_some(self, timeout):
        if self.terminated:
            raise pvtest.StreamClosed('session terminated')
        if self.outstanding is None:
            self.request()
        r = self._wait(self.outstanding, timeout)
        if r is None:
            return False
        self.outstanding = None
        self._take(r)
        return True

    def wait_closed(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.terminated and time.monotonic() < deadline:
            try:
                self._recv_some(deadline - time.monotonic())
            except pvtest.StreamClosed:
                break
        return self.terminated

    def open_stream(self, to=None, prefix=b'', header=None, lang='en'):
        """A stream restart (XEP-0206 §5)."""
        self.request(attrs={'xmpp:restart': 'true', 'to': self.domain,
                            'xml:lang': lang})
        el = self.recv()
        if el.tag == '{%s}features' % pvtest.NS_STREAMS:
            self.features = el
            return el
        self.pending.insert(0, el)
        return None

    def connect(self):
        return self.features

    def starttls(self):
        raise TestFailure('no STARTTLS over BOSH')

    def terminate(self, children=''):
        self.request(children, attrs={'type': 'terminate'})
        r = self._wait(self.outstanding, self.timeout)
        self.outstanding = None
        if r is not None:
            self._take(r)
        return self.terminated
