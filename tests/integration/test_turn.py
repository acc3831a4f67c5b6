#!/usr/bin/python3
# mod_turn + mod_extdisco end to end: a client logged in over XMPP gets
# STUN/TURN services and credentials by XEP-0215 (extdisco:2 and :1, type
# filter, credentials request); a TURN client written here in Python (its
# own STUN encoder on raw UDP/TCP sockets, independent of src/stun.c)
# allocates (401 then success), creates permissions and channels and
# relays packets both ways to a UDP peer on 127.0.0.1 (turn_allow_private =
# true) over UDP and TCP; Binding; refresh and deletion; expiry; wrong
# password -> 401; bad nonce -> 438; unknown attribute -> 420; quota ->
# 486; turn_max_bandwidth; a wildcard (dual-stack) listener; internal
# peers refused with 403 when turn_allow_private is false; `palaverctl
# check turn` against both kinds of server. turn_bench.py imports the
# client part.

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
import sys
import time
import zlib

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402

# --- a small STUN/TURN client (RFC 8489, RFC 8656) ----------------------

MAGIC = 0x2112A442
BINDING, ALLOCATE, REFRESH, SEND, DATA, CREATE_PERMISSION, CHANNEL_BIND = (
    0x001, 0x003, 0x004, 0x006, 0x007, 0x008, 0x009)
REQUEST, INDICATION, SUCCESS, ERROR = 0, 1, 2, 3

A_USERNAME = 0x0006
A_MESSAGE_INTEGRITY = 0x0008
A_ERROR_CODE = 0x0009
A_UNKNOWN_ATTRIBUTES = 0x000A
A_CHANNEL_NUMBER = 0x000C
A_LIFETIME = 0x000D
A_XOR_PEER_ADDRESS = 0x0012
A_DATA = 0x0013
A_REALM = 0x0014
A_NONCE = 0x0015
A_XOR_RELAYED_ADDRESS = 0x0016
A_REQUESTED_TRANSPORT = 0x0019
A_XOR_MAPPED_ADDRESS = 0x0020
A_SOFTWARE = 0x8022
A_FINGERPRINT = 0x8028


def rest_password(secret, username):
    """coturn's shared-secret scheme: base64(HMAC-SHA1(secret, user))."""
    return base64.b64encode(hmac.new(secret.encode(), username.encode(),
                                     hashlib.sha1).digest()).decode()


def long_term_key(username, realm, password):
    return hashlib.md5(('%s:%s:%s' % (username, realm, password))
                       .encode()).digest()


def msg_type(method, cls):
    return ((method & 0x000f) | ((method & 0x0070) << 1) |
            ((method & 0x0f80) << 2) | ((cls & 1) << 4) | ((cls & 2) << 7))


def split_type(t):
    method = (t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2)
    cls = ((t >> 4) & 1) | ((t >> 7) & 2)
    return method, cls


def xor_addr(ip, port, tid):
    if ':' in ip:
        raw = socket.inet_pton(socket.AF_INET6, ip)
        pad = struct.pack('>I', MAGIC) + tid
        return (struct.pack('>BBH', 0, 2, port ^ (MAGIC >> 16)) +
                bytes(a ^ b for a, b in zip(raw, pad)))
    raw = struct.unpack('>I', socket.inet_aton(ip))[0]
    return struct.pack('>BBHI', 0, 1, port ^ (MAGIC >> 16), raw ^ MAGIC)


def parse_xor_addr(v, tid):
    fam, port = v[1], struct.unpack('>H', v[2:4])[0] ^ (MAGIC >> 16)
    if fam == 1:
        ip = struct.unpack('>I', v[4:8])[0] ^ MAGIC
        return socket.inet_ntoa(struct.pack('>I', ip)), port
    pad = struct.pack('>I', MAGIC) + tid
    return (socket.inet_ntop(socket.AF_INET6,
                             bytes(a ^ b for a, b in zip(v[4:20], pad))),
            port)


def attr(t, v):
    return struct.pack('>HH', t, len(v)) + v + b'\0' * (-len(v) % 4)


def encode(method, cls, attrs, key=None, fingerprint=True, tid=None):
    """attrs: list of (type, bytes). Integrity with key (bytes) and
    FINGERPRINT are appended as RFC 8489 §14.5/§14.7 say."""
    tid = tid or os.urandom(12)
    body = b''.join(attr(t, v) for t, v in attrs)

    def header(extra):
        return struct.pack('>HHI', msg_type(method, cls), len(body) + extra,
                           MAGIC) + tid
    if key is not None:
        mac = hmac.new(key, header(24) + body, hashlib.sha1).digest()
        body += attr(A_MESSAGE_INTEGRITY, mac)
    if fingerprint:
        crc = zlib.crc32(header(8) + body) ^ 0x5354554e
        body += attr(A_FINGERPRINT, struct.pack('>I', crc))
    return header(0) + body, tid


class Msg:
    def __init__(self, data):
        if len(data) < 20:
            raise ValueError('short STUN message')
        t, n, magic = struct.unpack('>HHI', data[:8])
        if magic != MAGIC or len(data) != 20 + n:
            raise ValueError('bad STUN header')
        self.raw = data
        self.method, self.cls = split_type(t)
        self.tid = data[8:20]
        self.attrs = []         # (type, value, offset)
        off = 20
        while off < len(data):
            at, alen = struct.unpack('>HH', data[off:off + 4])
            if off + 4 + alen > len(data):
                raise ValueError('attribute overrun')
            self.attrs.append((at, data[off + 4:off + 4 + alen], off))
            off += 4 + alen + (-alen % 4)

    def get(self, t):
        for at, v, _ in self.attrs:
            if at == t:
                return v
        return None

    def error(self):
        v = self.get(A_ERROR_CODE)
        if v is None:
            return None
        return (v[2] & 7) * 100 + v[3]

    def lifetime(self):
        v = self.get(A_LIFETIME)
        return None if v is None else struct.unpack('>I', v)[0]

    def addr(self, t):
        v = self.get(t)
        return None if v is None else parse_xor_addr(v, self.tid)

    def fingerprint_ok(self):
        for at, v, off in self.attrs:
            if at == A_FINGERPRINT:
                return (zlib.crc32(self.raw[:off]) ^ 0x5354554e ==
                        struct.unpack('>I', v)[0])
        return None

    def integrity_ok(self, key):
        for at, v, off in self.attrs:
            if at == A_MESSAGE_INTEGRITY:
                hdr = bytearray(self.raw[:20])
                hdr[2:4] = struct.pack('>H', off + 24 - 20)
                mac = hmac.new(key, bytes(hdr) + self.raw[20:off],
                               hashlib.sha1).digest()
                return hmac.compare_digest(mac, v)
        return None


def channel_data(chan, data, tcp=False):
    out = struct.pack('>HH', chan, len(data)) + data
    if tcp:
        out += b'\0' * (-len(out) % 4)
    return out


class TurnClient:
    """One client 5-tuple: a UDP socket or a TCP connection to the
    server. Credentials: username/password as XEP-0215 gives them."""

    def __init__(self, host, port, tcp=False, username=None, password=None,
                 timeout=5.0, tls=None, server_name=None):
        self.tcp = tcp or tls is not None
        self.server = (host, port)
        if self.tcp:
            self.sock = socket.create_connection((host, port), timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                self.sock = tls.wrap_socket(self.sock,
                                            server_hostname=server_name)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(('127.0.0.1', 0))
        self.sock.settimeout(timeout)
        self.inbuf = b''
        self.username = username
        self.password = password
        self.realm = None
        self.nonce = None
        self.key = None
        self.pending = []       # indications / channel data read early

    def close(self):
        self.sock.close()

    def local(self):
        return self.sock.getsockname()

    def send_raw(self, data):
        if self.tcp:
            self.sock.sendall(data)
        else:
            self.sock.sendto(data, self.server)

    def recv_raw(self):
        if not self.tcp:
            data, _ = self.sock.recvfrom(70000)
            return data
        while True:
            if len(self.inbuf) >= 4:
                n = struct.unpack('>H', self.inbuf[2:4])[0]
                if self.inbuf[0] & 0xc0 == 0x40:
                    total = (4 + n + 3) & ~3
                    size = 4 + n
                else:
                    total = size = 20 + n
                if len(self.inbuf) >= total:
                    frame = self.inbuf[:size]
                    self.inbuf = self.inbuf[total:]
                    return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError('server closed the TURN connection')
            self.inbuf += chunk

    def transact(self, method, attrs, auth=True, key=None, tid=None):
        """Sends a request, returns the response with that transaction id
        (other traffic is kept in self.pending). Retransmits over UDP."""
        if auth and self.nonce is not None:
            attrs = attrs + [(A_USERNAME, self.username.encode()),
                             (A_REALM, self.realm.encode()),
                             (A_NONCE, self.nonce.encode())]
            key = key or self.key
        data, tid = encode(method, REQUEST, attrs, key=key, tid=tid)
        for attempt in range(4):
            self.send_raw(data)
            try:
                while True:
                    raw = self.recv_raw()
                    if raw[0] & 0xc0 == 0 and raw[8:20] == tid:
                        return Msg(raw)
                    self.pending.append(raw)
            except socket.timeout:
                if self.tcp or attempt == 3:
                    raise
        raise socket.timeout()

    def request(self, method, attrs):
        """A request with long-term credentials: learns realm and nonce
        from a 401 (or 438) and retries once with them."""
        r = self.transact(method, attrs)
        if r.cls == ERROR and r.error() in (401, 438) and \
                r.get(A_NONCE) is not None:
            first = self.nonce is None
            self.realm = r.get(A_REALM).decode()
            self.nonce = r.get(A_NONCE).decode()
            self.key = long_term_key(self.username, self.realm,
                                     self.password)
            if first or r.error() == 438:
                r = self.transact(method, attrs)
        return r

    def allocate(self, lifetime=None):
        attrs = [(A_REQUESTED_TRANSPORT, b'\x11\0\0\0')]
        if lifetime is not None:
            attrs.append((A_LIFETIME, struct.pack('>I', lifetime)))
        return self.request(ALLOCATE, attrs)

    def refresh(self, lifetime):
        return self.request(REFRESH, [(A_LIFETIME,
                                       struct.pack('>I', lifetime))])

    def permit(self, ip, port=0):
        return self.request(CREATE_PERMISSION, [
            (A_XOR_PEER_ADDRESS, xor_addr(ip, port, b'\0' * 12))])

    def bind_channel(self, chan, ip, port):
        return self.request(CHANNEL_BIND, [
            (A_CHANNEL_NUMBER, struct.pack('>HH', chan, 0)),
            (A_XOR_PEER_ADDRESS, xor_addr(ip, port, b'\0' * 12))])

    def send_indication(self, ip, port, data):
        tid = os.urandom(12)
        msg, _ = encode(SEND, INDICATION,
                        [(A_XOR_PEER_ADDRESS, xor_addr(ip, port, tid)),
                         (A_DATA, data)], fingerprint=False, tid=tid)
        self.send_raw(msg)

    def send_channel(self, chan, data):
        self.send_raw(channel_data(chan, data, self.tcp))

    def recv_relayed(self):
        """Next Data indication or ChannelData: (kind, peer or channel,
        payload)."""
        raw = self.pending.pop(0) if self.pending else self.recv_raw()
        if raw[0] & 0xc0 == 0x40:
            chan, n = struct.unpack('>HH', raw[:4])
            return 'channel', chan, raw[4:4 + n]
        m = Msg(raw)
        if m.method == DATA and m.cls == INDICATION:
            return 'data', m.addr(A_XOR_PEER_ADDRESS), m.get(A_DATA)
        raise ValueError('unexpected message method %#x class %d' %
                         (m.method, m.cls))


# --- the tests ------------------------------------------------------------

NS_X2 = 'urn:xmpp:extdisco:2'
NS_X1 = 'urn:xmpp:extdisco:1'
MODULES = ['disco', 'ping', 'extdisco', 'turn']
USERS = {u: u + '-turn-pw' for u in ('alice', 'bob', 'carol', 'dave')}
RELAY_PORTS = (40000, 40999)

suite = pvtest.Suite('turn')


def listen():
    return [{'kind': 'c2s', 'address': '127.0.0.1', 'port': 0},
            {'kind': 'c2s_direct_tls', 'address': '127.0.0.1', 'port': 0},
            {'kind': 'turn_udp', 'address': '127.0.0.1', 'port': 0},
            {'kind': 'turn_tcp', 'address': '127.0.0.1', 'port': 0},
            {'kind': 'turns', 'address': '127.0.0.1', 'port': 0}]


def server():
    """turn_allow_private: the tests' peers live on 127.0.0.1."""
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('mod_turn/mod_extdisco not built')
    return suite.shared_server(
        'open', users=USERS, modules=MODULES, listen=listen(),
        turn_allow_private=True, turn_max_allocations_per_user=2,
        turn_relay_ports='%d-%d' % RELAY_PORTS,
        # the harness's certificate for the domain (relative to the
        # configuration file)
        turn_tls_certificate='tls/localhost.crt',
        turn_tls_key='tls/localhost.key')


def strict_server():
    """The default turn_allow_private = false, short lifetimes."""
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('mod_turn/mod_extdisco not built')
    return suite.shared_server(
        'strict', users=USERS, modules=MODULES, listen=listen(),
        turn_default_lifetime='2s', turn_max_lifetime='2s',
        turn_secret='operator-secret')


def services(srv, user, ns=NS_X2, typ=None):
    c = srv.login(user)
    try:
        t = " type='%s'" % typ if typ else ''
        r = c.iq("<iq type='get' id='x1' to='%s'><services xmlns='%s'%s/>"
                 "</iq>" % (srv.domain, ns, t))
        check_eq(r.get('type'), 'result', 'services answer type')
        q = r.find('{%s}services' % ns)
        check(q is not None, 'no <services/> in %s' % pvtest.tostr(r))
        return [dict(s.attrib) for s in q.findall('{%s}service' % ns)]
    finally:
        c.close()


def creds(srv, user):
    """(username, password) of the server's TURN over UDP, by XEP-0215."""
    for s in services(srv, user, typ='turn'):
        if s.get('transport') == 'udp':
            return s['username'], s['password']
    pvtest.fail('no turn/udp service for %s' % user)


def client(srv, user, tcp=False, password=None):
    u, p = creds(srv, user)
    kind = 'turn_tcp' if tcp else 'turn_udp'
    return TurnClient(srv.host(kind), srv.port(kind), tcp=tcp, username=u,
                      password=password or p)


class Peer:
    """A UDP endpoint on 127.0.0.1 standing for the other party."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.settimeout(5)
        self.addr = self.sock.getsockname()

    def recv(self):
        return self.sock.recvfrom(70000)

    def close(self):
        self.sock.close()


def allocated(c):
    r = c.allocate()
    check_eq((r.cls, r.error()), (SUCCESS, None), 'Allocate answer')
    check(r.integrity_ok(c.key), 'Allocate success without valid '
          'MESSAGE-INTEGRITY')
    check(r.fingerprint_ok(), 'Allocate success without valid FINGERPRINT')
    relay = r.addr(A_XOR_RELAYED_ADDRESS)
    check(relay is not None, 'no XOR-RELAYED-ADDRESS')
    return relay, r


@suite.test
def extdisco_services():
    srv = server()
    now = time.time()
    got = services(srv, 'alice')
    kinds = sorted((s['type'], s['transport'], int(s['port'])) for s in got)
    check_eq(kinds, sorted([('stun', 'udp', srv.port('turn_udp')),
                            ('stun', 'tcp', srv.port('turn_tcp')),
                            ('turn', 'udp', srv.port('turn_udp')),
                            ('turn', 'tcp', srv.port('turn_tcp')),
                            ('turns', 'tcp', srv.port('turns'))]),
             'services')
    for s in got:
        check_eq(s['host'], srv.domain, 'service host')
        if s['type'] == 'stun':
            check('username' not in s, 'credentials on a STUN entry')
            continue
        check_eq(s.get('restricted'), '1', 'restricted')
        exp, user = s['username'].split(':', 1)
        check_eq(user, 'alice@localhost', 'user part of the username')
        check(now + 3600 < int(exp) < now + 2 * 86400,
              'username expiry %s not about a day ahead' % exp)
        check(s.get('expires', '').endswith('Z'), 'expires %r' %
              s.get('expires'))
        check_eq(len(base64.b64decode(s['password'])), 20,
                 'password is base64 of an HMAC-SHA1')
    # type filter and the older namespace
    check_eq(sorted(s['type'] for s in services(srv, 'bob', typ='stun')),
             ['stun', 'stun'], 'type=stun filter')
    check_eq(len(services(srv, 'bob', ns=NS_X1)), 5, 'extdisco:1 services')
    # a credentials request for the TURN service
    c = srv.login('bob')
    try:
        r = c.iq("<iq type='get' id='d1' to='%s'><query xmlns='http://jabber"
                 ".org/protocol/disco#info'/></iq>" % srv.domain)
        feats = [f.get('var') for f in r.iter(
            '{http://jabber.org/protocol/disco#info}feature')]
        check(NS_X2 in feats and NS_X1 in feats,
              'extdisco features in disco#info: %s' % feats)
        r = c.iq("<iq type='get' id='c1' to='%s'><credentials xmlns='%s'>"
                 "<service type='turn' host='%s'/></credentials></iq>" %
                 (srv.domain, NS_X2, srv.domain))
        check_eq(r.get('type'), 'result', 'credentials answer')
        sv = r.findall('{%s}credentials/{%s}service' % (NS_X2, NS_X2))
        check(len(sv) == 2 and all(s.get('username', '').endswith(
            ':bob@localhost') and s.get('password') for s in sv),
            'credentials: %s' % pvtest.tostr(r))
        r = c.iq("<iq type='get' id='c2' to='%s'><credentials xmlns='%s'>"
                 "<service type='turn' host='elsewhere.example'/>"
                 "</credentials></iq>" % (srv.domain, NS_X2))
        check_eq(pvtest.stanza_error(r)[1], 'item-not-found',
                 'credentials for an unknown host')
    finally:
        c.close()


@suite.test
def stun_binding():
    srv = server()
    for tcp in (False, True):
        kind = 'turn_tcp' if tcp else 'turn_udp'
        c = TurnClient(srv.host(kind), srv.port(kind), tcp=tcp)
        try:
            r = c.transact(BINDING, [], auth=False)
            check_eq((r.method, r.cls), (BINDING, SUCCESS), 'Binding')
            check_eq(r.addr(A_XOR_MAPPED_ADDRESS), c.local(),
                     'XOR-MAPPED-ADDRESS over %s' % kind)
            check(r.fingerprint_ok(), 'Binding answer FINGERPRINT')
            # a comprehension-required attribute we do not know -> 420
            r = c.transact(BINDING, [(0x0031, b'\0\0\0\0')], auth=False)
            check_eq(r.error(), 420, 'unknown attribute')
            check_eq(r.get(A_UNKNOWN_ATTRIBUTES), b'\x00\x31',
                     'UNKNOWN-ATTRIBUTES')
        finally:
            c.close()


def relay_both_ways(c, peer, tag):
    """Permission, Send/Data, channel, ChannelData in both directions."""
    relay, _ = allocated(c)
    check_eq(relay[0], '127.0.0.1', 'relayed address')
    check(RELAY_PORTS[0] <= relay[1] <= RELAY_PORTS[1],
          'relay port %d outside turn_relay_ports' % relay[1])
    # nothing passes before a permission exists
    c.send_indication(peer.addr[0], peer.addr[1], b'too early')
    r = c.permit(*peer.addr)
    check_eq((r.cls, r.error()), (SUCCESS, None), 'CreatePermission')
    check(r.integrity_ok(c.key), 'CreatePermission answer integrity')
    c.send_indication(peer.addr[0], peer.addr[1], b'hello ' + tag)
    data, src = peer.recv()
    check_eq(data, b'hello ' + tag, 'Send indication payload at the peer')
    check_eq(src, relay, 'the peer sees the relayed address')
    peer.sock.sendto(b'back ' + tag, relay)
    kind, who, payload = c.recv_relayed()
    check_eq((kind, who, payload), ('data', peer.addr, b'back ' + tag),
             'Data indication to the client')
    r = c.bind_channel(0x4001, *peer.addr)
    check_eq((r.cls, r.error()), (SUCCESS, None), 'ChannelBind')
    for n in (1, 5, 1000):
        c.send_channel(0x4001, b'x' * n)
        data, _ = peer.recv()
        check_eq(len(data), n, 'ChannelData payload size at the peer')
        peer.sock.sendto(b'y' * n, relay)
        kind, chan, payload = c.recv_relayed()
        check_eq((kind, chan, payload), ('channel', 0x4001, b'y' * n),
                 'ChannelData to the client')
    # the same channel for another peer is refused
    r = c.bind_channel(0x4001, '127.0.0.1', peer.addr[1] + 1)
    check_eq(r.error(), 400, 'channel rebound to another peer')
    return relay


@suite.test
def allocate_udp_relay():
    srv = server()
    c = client(srv, 'alice')
    peer = Peer()
    try:
        # first without credentials: 401 with realm and nonce
        r = c.transact(ALLOCATE, [(A_REQUESTED_TRANSPORT, b'\x11\0\0\0')],
                       auth=False)
        check_eq(r.error(), 401, 'unauthenticated Allocate')
        check_eq(r.get(A_REALM), srv.domain.encode(), 'REALM')
        check(r.get(A_NONCE), 'no NONCE in the 401')
        relay_both_ways(c, peer, b'udp')
        # a second Allocate on the same 5-tuple: 437
        r = c.transact(ALLOCATE, [(A_REQUESTED_TRANSPORT, b'\x11\0\0\0')])
        check_eq(r.error(), 437, 'second Allocate on one 5-tuple')
        # refresh, then delete with lifetime 0
        # RFC 8656 §7.3: min(requested, max), but not below the default
        r = c.refresh(1200)
        check_eq((r.cls, r.lifetime()), (SUCCESS, 1200), 'Refresh 1200')
        r = c.refresh(60)
        check_eq((r.cls, r.lifetime()), (SUCCESS, 600), 'Refresh 60')
        r = c.refresh(0)
        check_eq((r.cls, r.lifetime()), (SUCCESS, 0), 'Refresh 0')
        r = c.permit(*peer.addr)
        check_eq(r.error(), 437, 'permission after the allocation was '
                 'deleted')
    finally:
        c.close()
        peer.close()


@suite.test
def allocate_tcp_relay():
    srv = server()
    c = client(srv, 'bob', tcp=True)
    peer = Peer()
    try:
        relay = relay_both_ways(c, peer, b'tcp')
        # closing the connection releases the allocation
        c.close()
        time.sleep(0.3)
        peer.sock.sendto(b'nobody', relay)
        c2 = client(srv, 'bob', tcp=True)
        try:
            allocated(c2)       # quota 2: it was released
            r = c2.refresh(0)
            check_eq(r.cls, SUCCESS, 'Refresh 0 over TCP')
        finally:
            c2.close()
    finally:
        c.close()
        peer.close()


@suite.test
def allocate_tls_relay():
    """TURN over TLS (turns listener, turn_tls_certificate), credentials
    from the turns entry of XEP-0215."""
    srv = server()
    turns = [s for s in services(srv, 'dave', typ='turns')]
    check_eq(len(turns), 1, 'turns services')
    ctx = ssl.create_default_context(cafile=srv.cafile)
    c = TurnClient('127.0.0.1', int(turns[0]['port']),
                   username=turns[0]['username'],
                   password=turns[0]['password'], tls=ctx,
                   server_name=srv.domain)
    peer = Peer()
    try:
        check_eq(c.sock.version() in ('TLSv1.2', 'TLSv1.3'), True,
                 'TLS version %s' % c.sock.version())
        relay_both_ways(c, peer, b'tls')
        check_eq(c.refresh(0).cls, SUCCESS, 'Refresh 0 over TLS')
    finally:
        c.close()
        peer.close()


@suite.test
def wrong_password_and_nonce():
    srv = server()
    c = client(srv, 'alice', password='not-the-password')
    try:
        r = c.allocate()
        check_eq(r.error(), 401, 'Allocate with a wrong password')
        check(r.get(A_NONCE) is not None, '401 without NONCE')
    finally:
        c.close()
    # expired credentials: an expiry in the past is refused too
    u, p = creds(srv, 'alice')
    c = client(srv, 'alice')
    try:
        c.username = '1000:alice@localhost'
        c.password = rest_password('whatever', c.username)
        r = c.allocate()
        check_eq(r.error(), 401, 'Allocate with expired credentials')
        # a nonce the server never gave: 438 Stale Nonce with a new one
        c.username, c.password = u, p
        c.key = long_term_key(u, c.realm, p)
        c.nonce = 'f' * 40
        r = c.transact(ALLOCATE, [(A_REQUESTED_TRANSPORT, b'\x11\0\0\0')])
        check_eq(r.error(), 438, 'Allocate with a foreign nonce')
        check(r.get(A_NONCE) not in (None, b'f' * 40), 'no fresh nonce')
        r = c.allocate()
        check_eq(r.cls, SUCCESS, 'Allocate after 438')
        c.refresh(0)
    finally:
        c.close()


@suite.test
def quota():
    srv = server()
    cs = [client(srv, 'carol') for _ in range(3)]
    try:
        allocated(cs[0])
        allocated(cs[1])
        r = cs[2].allocate()
        check_eq(r.error(), 486, 'third allocation with a quota of 2')
        check_eq(cs[0].refresh(0).cls, SUCCESS, 'release one')
        allocated(cs[2])
        # another user is not affected
        d = client(srv, 'dave')
        try:
            allocated(d)
        finally:
            d.close()
    finally:
        for c in cs:
            c.close()


@suite.test
def forbidden_peers():
    srv = strict_server()
    c = client(srv, 'alice')
    try:
        relay, _ = allocated(c)
        for ip in ('127.0.0.1', '10.1.2.3', '192.168.1.1', '172.16.0.1',
                   '169.254.0.1', '0.0.0.0'):
            r = c.permit(ip, 9)
            check_eq(r.error(), 403, 'CreatePermission to %s' % ip)
        r = c.bind_channel(0x4002, '127.0.0.1', 9)
        check_eq(r.error(), 403, 'ChannelBind to 127.0.0.1')
        r = c.permit('192.0.2.1', 9)
        check_eq((r.cls, r.error()), (SUCCESS, None),
                 'CreatePermission to a public address')
    finally:
        c.close()


@suite.test
def expiry():
    srv = strict_server()
    c = client(srv, 'bob')
    try:
        _, r = allocated(c)
        check_eq(r.lifetime(), 2, 'LIFETIME with turn_max_lifetime 2s')
        time.sleep(3.5)
        r = c.permit('192.0.2.1')
        check_eq(r.error(), 437, 'allocation after its lifetime')
    finally:
        c.close()


def any_server():
    """A turn_udp listener on the wildcard address, turn_max_bandwidth."""
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('mod_turn/mod_extdisco not built')
    return suite.shared_server(
        'any', users=USERS, modules=MODULES,
        listen=listen()[:2] + [{'kind': 'turn_udp', 'port': 0}],
        turn_allow_private=True, turn_relay_ports='%d-%d' % RELAY_PORTS,
        turn_max_bandwidth='20K')


@suite.test
def dual_stack_listener():
    """A turn_udp listener without address (the core binds [::]): the
    client's address arrives IPv4-mapped; answers, relayed address and
    Data indications must still be IPv4 and reach it."""
    srv = any_server()
    u, p = creds(srv, 'alice')
    c = TurnClient('127.0.0.1', srv.port('turn_udp'), username=u,
                   password=p)
    peer = Peer()
    try:
        r = c.transact(BINDING, [], auth=False)
        check_eq(r.addr(A_XOR_MAPPED_ADDRESS), c.local(),
                 'XOR-MAPPED-ADDRESS through a dual-stack listener')
        relay_both_ways(c, peer, b'any')
    finally:
        c.close()
        peer.close()


def drain(sock, wait=0.3):
    n = 0
    sock.settimeout(wait)
    try:
        while True:
            sock.recv(70000)
            n += 1
    except socket.timeout:
        pass
    sock.settimeout(5)
    return n


@suite.test
def bandwidth_limit():
    """turn_max_bandwidth = 20K: a burst of 100 KB gets about 20 KB
    through (one second of allowance), the rest is dropped; a second
    later the allowance is back."""
    srv = any_server()
    u, p = creds(srv, 'bob')
    c = TurnClient('127.0.0.1', srv.port('turn_udp'), username=u,
                   password=p)
    peer = Peer()
    try:
        allocated(c)
        check_eq(c.bind_channel(0x4003, *peer.addr).cls, SUCCESS,
                 'ChannelBind')
        for _ in range(100):
            c.send_channel(0x4003, b'b' * 1000)
        got = drain(peer.sock)
        check(12 <= got <= 30, '%d of 100 KB passed a 20 KB/s limit' % got)
        time.sleep(1.1)
        for _ in range(5):
            c.send_channel(0x4003, b'b' * 1000)
        check_eq(drain(peer.sock), 5, 'packets after the bucket refilled')
    finally:
        c.close()
        peer.close()


@suite.test
def palaverctl_check_turn():
    srv = server()
    r = srv.ctl('check', 'turn', 'alice@localhost', check=False)
    check_eq(r.returncode, 0, 'palaverctl check turn on the open server: '
             '%s%s' % (r.stdout, r.stderr))
    check('relayed' in r.stdout, 'check turn output: %s' % r.stdout)
    # the strict server refuses the loopback peer: check says so
    srv = strict_server()
    r = srv.ctl('check', 'turn', 'alice@localhost', check=False)
    check(r.returncode != 0, 'check turn passed against a server that '
          'refuses loopback peers')
    check('403' in r.stdout + r.stderr and 'turn_allow_private' in
          r.stdout + r.stderr, 'check turn explanation: %s%s' %
          (r.stdout, r.stderr))


if __name__ == '__main__':
    suite.main()
