#!/usr/bin/python3
# XEP-0065 SOCKS5 Bytestreams proxy (modules/mod_proxy65.c on
# proxy.localhost, listener kind proxy65): disco identity and feature,
# the streamhost query, the full negotiation between two clients through
# the server (offer, streamhost-used, SOCKS5 CONNECT with the SHA-1 hash,
# activation) and 1 MiB relayed and compared both ways; nothing relayed
# before activation; activation refusals (unknown stream, one party, a
# stranger); a third connection and SOCKS5 without "no authentication"
# refused; unactivated connections time out; backpressure: a receiver
# that does not read stops the sender without the server's memory
# growing by what was sent; SIGHUP hands the listener to the new host.

import hashlib
import os
import secrets
import signal
import socket
import struct
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import NS_CLIENT, check, check_eq  # noqa: E402

suite = pvtest.Suite('proxy65')
NS_BS = 'http://jabber.org/protocol/bytestreams'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_ITEMS = 'http://jabber.org/protocol/disco#items'
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw', 'carol': 'car0l-pw'}
TIMEOUT_S = 3


def server():
    return suite.shared_server(
        users=USERS,
        modules=pvtest.available_modules(['disco', 'ping', 'proxy65']),
        listen=[{'kind': 'c2s', 'address': '127.0.0.1', 'port': 0},
                {'kind': 'c2s_direct_tls', 'address': '127.0.0.1',
                 'port': 0},
                {'kind': 'proxy65', 'address': '127.0.0.1', 'port': 0}],
        proxy65_timeout='%ds' % TIMEOUT_S)


def proxy_jid(srv):
    return 'proxy.%s' % srv.domain


def sha1_hex(sid, initiator, target):
    return hashlib.sha1((sid + initiator + target).encode()).hexdigest()


def socks_connect(srv, dst, methods=b'\x00', expect_ok=True):
    """SOCKS5 CONNECT to DST.ADDR dst (XEP-0065 §5.3.2); returns the
    socket, or (socket, reply code) when expect_ok is False."""
    s = socket.create_connection(('127.0.0.1', srv.port('proxy65')),
                                 10 * pvtest.time_factor())
    s.sendall(bytes([5, len(methods)]) + methods)
    r = recv_exact(s, 2)
    if r != b'\x05\x00':
        if expect_ok:
            pvtest.fail('SOCKS5 method reply %r' % r)
        return s, r[1] if len(r) == 2 else None
    addr = dst.encode()
    s.sendall(b'\x05\x01\x00\x03' + bytes([len(addr)]) + addr + b'\x00\x00')
    head = recv_exact(s, 5)
    if len(head) < 5 or head[1] != 0:
        if expect_ok:
            pvtest.fail('SOCKS5 CONNECT reply %r' % head)
        return s, head[1] if len(head) > 1 else None
    check_eq(head[3], 3, 'reply ATYP')
    rest = recv_exact(s, head[4] + 2)
    check_eq(rest[:-2].decode(), dst, 'BND.ADDR')
    check_eq(rest[-2:], b'\x00\x00', 'BND.PORT')
    return s if expect_ok else (s, 0)


def recv_exact(s, n, timeout=None):
    s.settimeout(timeout or 10 * pvtest.time_factor())
    buf = b''
    while len(buf) < n:
        try:
            d = s.recv(n - len(buf))
        except (ConnectionError, socket.timeout):
            break
        if not d:
            break
        buf += d
    return buf


def closed_by_server(s, timeout):
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except socket.timeout:
        return False
    except ConnectionError:
        return True


def nothing_arrives(s, timeout=0.5):
    s.settimeout(timeout)
    try:
        s.recv(65536, socket.MSG_PEEK)
    except socket.timeout:
        return True
    return False        # data, or the end of the stream


def activate(c, srv, sid, target, iq_id='act'):
    return c.iq("<iq type='set' id='%s' to='%s'><query xmlns='%s' sid='%s'>"
                "<activate>%s</activate></query></iq>" %
                (iq_id, proxy_jid(srv), NS_BS, sid, target))


def negotiate(srv, a, b, sid):
    """The initiator a offers the proxy to b through the server; b
    connects and answers streamhost-used; then a connects. Returns
    (a's socket, b's socket), not yet activated."""
    r = a.iq("<iq type='get' id='sh' to='%s'><query xmlns='%s'/></iq>" %
             (proxy_jid(srv), NS_BS))
    check_eq(r.get('type'), 'result', 'streamhost query')
    hosts = r.findall('{%s}query/{%s}streamhost' % (NS_BS, NS_BS))
    check_eq(len(hosts), 1, 'streamhosts')
    sh = hosts[0]
    check_eq(sh.get('jid'), proxy_jid(srv), 'streamhost jid')
    check_eq(sh.get('host'), '127.0.0.1', 'streamhost host')
    check_eq(int(sh.get('port')), srv.port('proxy65'), 'streamhost port')
    a.send("<iq type='set' id='offer' to='%s'><query xmlns='%s' sid='%s' "
           "mode='tcp'><streamhost jid='%s' host='%s' port='%s'/></query>"
           "</iq>" % (b.jid, NS_BS, sid, sh.get('jid'), sh.get('host'),
                      sh.get('port')))
    offer = b.recv_until(lambda e: e.tag == '{%s}iq' % NS_CLIENT and
                         e.get('id') == 'offer', what='bytestream offer')
    q = offer.find('{%s}query' % NS_BS)
    check_eq(q.get('sid'), sid, 'offered sid')
    st = q.find('{%s}streamhost' % NS_BS)
    # the target's hash: SHA1(SID + Requester JID + Target JID)
    dst = sha1_hex(sid, offer.get('from'), b.jid)
    sb = socks_connect(srv, dst)
    check_eq(int(st.get('port')), srv.port('proxy65'), 'offered port')
    b.send("<iq type='result' id='offer' to='%s'><query xmlns='%s' "
           "sid='%s'><streamhost-used jid='%s'/></query></iq>" %
           (offer.get('from'), NS_BS, sid, st.get('jid')))
    used = a.recv_until(lambda e: e.tag == '{%s}iq' % NS_CLIENT and
                        e.get('id') == 'offer', what='streamhost-used')
    check_eq(used.get('type'), 'result', 'offer answer')
    sa = socks_connect(srv, sha1_hex(sid, a.jid, b.jid))
    return sa, sb


def pair(srv, resource):
    a = srv.login('alice', resource=resource)
    b = srv.login('bob', resource=resource)
    return a, b


@suite.test
def disco():
    srv = server()
    c = srv.login('alice', resource='disco')
    r = c.iq("<iq type='get' id='i' to='%s'><query xmlns='%s'/></iq>" %
             (proxy_jid(srv), NS_INFO))
    check_eq(r.get('type'), 'result', 'disco#info of the proxy')
    ids = [(i.get('category'), i.get('type')) for i in
           r.iter('{%s}identity' % NS_INFO)]
    check(('proxy', 'bytestreams') in ids, 'identities %s' % ids)
    feats = [f.get('var') for f in r.iter('{%s}feature' % NS_INFO)]
    check(NS_BS in feats, 'features %s' % feats)
    r = c.iq("<iq type='get' id='it' to='%s'><query xmlns='%s'/></iq>" %
             (srv.domain, NS_ITEMS))
    items = [i.get('jid') for i in r.iter('{%s}item' % NS_ITEMS)]
    check(proxy_jid(srv) in items, 'disco#items of the server %s' % items)
    # the service only lives on its component
    r = c.iq("<iq type='get' id='sh' to='%s'><query xmlns='%s'/></iq>" %
             (srv.domain, NS_BS))
    check_eq(r.get('type'), 'error', 'streamhost query to the vhost')
    c.close()


@suite.test
def transfer_1mib_both_ways():
    srv = server()
    a, b = pair(srv, 'xfer')
    sid = 's' + secrets.token_hex(8)
    sa, sb = negotiate(srv, a, b, sid)
    # nothing flows before activation (XEP-0065 §6.3.4)
    early = b'early bytes'
    sa.sendall(early)
    check(nothing_arrives(sb), 'data relayed before activation')
    r = activate(a, srv, sid, b.jid)
    check_eq(r.get('type'), 'result', 'activation')
    check_eq(recv_exact(sb, len(early)), early, 'early data after '
             'activation')
    data = os.urandom(1024 * 1024)
    back = os.urandom(64 * 1024)
    t = threading.Thread(target=sa.sendall, args=(data,))
    t.start()
    sb.sendall(back)                     # the other direction at once
    got = recv_exact(sb, len(data), timeout=30 * pvtest.time_factor())
    t.join()
    check_eq(len(got), len(data), 'bytes received')
    check_eq(hashlib.sha256(got).hexdigest(),
             hashlib.sha256(data).hexdigest(), 'SHA-256 of 1 MiB')
    check_eq(recv_exact(sa, len(back)), back, 'data target -> initiator')
    # a second activation of the same stream is refused
    r = activate(a, srv, sid, b.jid, iq_id='act2')
    check_eq(pvtest.stanza_error(r)[1], 'not-allowed', 'second activation')
    # the initiator closes: the target sees the end after every byte
    sa.sendall(b'last')
    sa.shutdown(socket.SHUT_WR)
    check_eq(recv_exact(sb, 4), b'last', 'bytes before the end')
    check(closed_by_server(sb, 10 * pvtest.time_factor()),
          'target not closed after the initiator ended')
    sb.close()
    sa.close()
    a.close()
    b.close()


@suite.test
def activation_refusals():
    srv = server()
    a, b = pair(srv, 'refuse')
    # unknown stream
    r = activate(a, srv, 'nosuchsid', b.jid, iq_id='x1')
    check_eq(pvtest.stanza_error(r)[1], 'item-not-found', 'unknown sid')
    # missing sid / activate
    r = a.iq("<iq type='set' id='x2' to='%s'><query xmlns='%s'/></iq>" %
             (proxy_jid(srv), NS_BS))
    check_eq(pvtest.stanza_error(r)[1], 'bad-request', 'no sid')
    r = activate(a, srv, 'sid', '@@bad', iq_id='x2b')
    check_eq(pvtest.stanza_error(r)[1], 'jid-malformed', 'bad target')
    # only the target connected
    sid = 'one' + secrets.token_hex(4)
    sb = socks_connect(srv, sha1_hex(sid, a.jid, b.jid))
    r = activate(a, srv, sid, b.jid, iq_id='x3')
    check_eq(pvtest.stanza_error(r)[1], 'not-allowed', 'one party')
    sa = socks_connect(srv, sha1_hex(sid, a.jid, b.jid))
    # a stranger who knows the sid cannot activate: its JID is in the hash
    carol = srv.login('carol', resource='refuse')
    r = activate(carol, srv, sid, b.jid, iq_id='x4')
    check_eq(pvtest.stanza_error(r)[1], 'item-not-found', 'stranger')
    # a third connection for the same hash is refused
    s3, code = socks_connect(srv, sha1_hex(sid, a.jid, b.jid),
                             expect_ok=False)
    check(code not in (0, None), 'third connection accepted (%r)' % code)
    check(closed_by_server(s3, 5 * pvtest.time_factor()),
          'third connection left open')
    # the pair still works
    r = activate(a, srv, sid, b.jid, iq_id='x5')
    check_eq(r.get('type'), 'result', 'activation after refusals')
    sa.sendall(b'ok')
    check_eq(recv_exact(sb, 2), b'ok', 'relay after refusals')
    for s in (sa, sb, s3):
        s.close()
    for c in (a, b, carol):
        c.close()


@suite.test
def socks_refusals():
    srv = server()
    # username/password only: no acceptable method
    s, code = socks_connect(srv, 'x' * 40, methods=b'\x02',
                            expect_ok=False)
    check_eq(code, 0xff, 'method reply without "no authentication"')
    check(closed_by_server(s, 5 * pvtest.time_factor()), 'left open')
    # not a SHA-1 hash
    s, code = socks_connect(srv, 'example.org', expect_ok=False)
    check(code not in (0, None), 'non-hash DST.ADDR accepted')
    # BIND instead of CONNECT
    s = socket.create_connection(('127.0.0.1', srv.port('proxy65')), 5)
    s.sendall(b'\x05\x01\x00')
    check_eq(recv_exact(s, 2), b'\x05\x00', 'method reply')
    s.sendall(b'\x05\x02\x00\x03\x28' + b'a' * 40 + b'\x00\x00')
    check_eq(recv_exact(s, 2)[1:], b'\x07', 'BIND refused')
    # SOCKS4 is not spoken
    s = socket.create_connection(('127.0.0.1', srv.port('proxy65')), 5)
    s.sendall(b'\x04\x01\x00\x50\x7f\x00\x00\x01\x00')
    check(closed_by_server(s, 5 * pvtest.time_factor()), 'SOCKS4 open')


@suite.test
def unactivated_times_out():
    srv = server()
    t0 = time.monotonic()
    s = socks_connect(srv, sha1_hex('idle', 'x@y/z', 'u@v/w'))
    # a silent connection that never sends its greeting, at the same time
    s2 = socket.create_connection(('127.0.0.1', srv.port('proxy65')), 5)
    check(closed_by_server(s, (TIMEOUT_S + 5) * pvtest.time_factor()),
          'unactivated connection still open')
    took = time.monotonic() - t0
    check(took >= TIMEOUT_S - 1, 'closed too early (%.1fs)' % took)
    check(closed_by_server(s2, 5 * pvtest.time_factor()),
          'silent connection still open')
    s.close()
    s2.close()


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


@suite.test
def backpressure():
    srv = server()
    a, b = pair(srv, 'bp')
    sid = 'bp' + secrets.token_hex(4)
    sa, sb = negotiate(srv, a, b, sid)
    check_eq(activate(a, srv, sid, b.jid).get('type'), 'result',
             'activation')
    # small kernel buffers on the clients' side; the server's own sockets
    # keep theirs
    sb.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sa.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    total = 48 * 1024 * 1024
    chunk = os.urandom(256 * 1024)
    sent = [0]
    done = threading.Event()

    def sender():
        try:
            while sent[0] < total:
                sa.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:
            pass
        done.set()

    before = rss_kib(srv.proc.pid)
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    time.sleep(2.0)          # the receiver reads nothing meanwhile
    stalled_at = sent[0]
    grown = rss_kib(srv.proc.pid) - before
    check(not done.is_set() and stalled_at < total,
          'the sender was never stopped (%d bytes sent)' % stalled_at)
    check(grown < 16 * 1024, 'server RSS grew by %d KiB while the '
          'receiver stalled (%d bytes sent)' % (grown, stalled_at))
    print('     stalled after %.1f MiB sent; server RSS +%d KiB' %
          (stalled_at / 1048576.0, grown))
    # now drain: everything arrives in order
    h = hashlib.sha256()
    n = 0
    sb.settimeout(30 * pvtest.time_factor())
    while n < total:
        d = sb.recv(1 << 20)
        if not d:
            break
        n += len(d)
        h.update(d)
    t.join(30 * pvtest.time_factor())
    check_eq(n, total, 'bytes after the stall')
    check_eq(h.hexdigest(),
             hashlib.sha256(chunk * (total // len(chunk))).hexdigest(),
             'SHA-256 after the stall')
    sa.close()
    sb.close()
    a.close()
    b.close()


@suite.test
def works_after_reload():
    """SIGHUP builds new hosts: the new component takes the listener over
    (the core keeps the socket) and serves new bytestreams."""
    srv = server()
    before = srv.log_text()
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10 * pvtest.time_factor()
    while 'configuration reloaded' not in srv.log_text()[len(before):]:
        check(srv.running(), 'palaverd died on SIGHUP')
        check(time.monotonic() < deadline, 'no reload logged')
        time.sleep(0.05)
    a, b = pair(srv, 'reload')
    sid = 'rl' + secrets.token_hex(4)
    sa, sb = negotiate(srv, a, b, sid)
    check_eq(activate(a, srv, sid, b.jid).get('type'), 'result',
             'activation after SIGHUP')
    data = os.urandom(100000)
    sa.sendall(data)
    check_eq(recv_exact(sb, len(data)), data, 'relay after SIGHUP')
    check('SOCKS5 bytestreams on' in srv.log_text()[len(before):],
          'the new component did not take the listener')
    for x in (sa, sb, a, b):
        x.close()


if __name__ == '__main__':
    suite.main()
