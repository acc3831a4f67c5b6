#!/usr/bin/python3
# mod_smacks (XEP-0198): a raw client of its own enables stream management,
# counts and acknowledges stanzas and resumes; a small in-test TCP proxy can
# CUT a connection (stop forwarding, keep the server's socket open: no FIN),
# so the server sees a silent peer, not a closed one. Covers the issue's
# "done when" (1,000 messages, cut halfway, resumed exactly once and in
# order; the same with the resumption window expired: all from offline
# storage), acks both ways, stale previd, enable before bind, clean close,
# hibernation across a message stream and a server shutdown.

import os
import select
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, NS_CLIENT, NS_STANZA_ERR  # noqa: E402

NS_SM = 'urn:xmpp:sm:3'
NS_PING = 'urn:xmpp:ping'
MODULES = pvtest.CORE_MODULES + ['roster', 'presence', 'offline', 'smacks']
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw', 'carol': 'car0l-pw',
         'dave': 'd4ve-pw', 'erin': '3rin-pw', 'frank': 'fr4nk-pw',
         'gina': 'g1na-pw', 'hank': 'h4nk-pw', 'ivy': '1vy-pw'}
# bursts of 1,000 stanzas must not trip the flood limits
BASE_CONF = {'c2s_stanza_rate': 'off', 'c2s_rate_limit': 'off',
             'offline_max_messages': 'off'}

suite = pvtest.Suite('smacks')
TF = pvtest.time_factor()


def sm(name):
    return '{%s}%s' % (NS_SM, name)


def server(key='default', **kw):
    if pvtest.available_modules(['smacks', 'offline']) != ['smacks',
                                                           'offline']:
        pvtest.skip('mod_smacks or mod_offline not built')
    conf = dict(BASE_CONF)
    conf.update(kw)
    return suite.shared_server(key, users=USERS, modules=MODULES, **conf)


# --------------------------------------------------------------------------
# A proxy whose connections can be cut without the server noticing.

class Proxy:
    """Listens on 127.0.0.1; each client connection gets its own upstream
    connection to (host, port). cut() stops forwarding (both directions, or
    one) and keeps every socket open: the server sees silence, no FIN."""

    def __init__(self, host, port):
        self.upstream = (host, port)
        self.lsock = socket.socket()
        self.lsock.bind(('127.0.0.1', 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.pairs = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self):
        while not self.stop.is_set():
            r, _, _ = select.select([self.lsock], [], [], 0.1)
            if not r:
                continue
            try:
                cs, _ = self.lsock.accept()
            except OSError:
                return
            ss = socket.create_connection(self.upstream)
            pair = {'c': cs, 's': ss, 'c2s': True, 's2c': True}
            with self.lock:
                self.pairs.append(pair)
            for src, dst, d in ((cs, ss, 'c2s'), (ss, cs, 's2c')):
                threading.Thread(target=self._pump,
                                 args=(pair, src, dst, d),
                                 daemon=True).start()

    def _pump(self, pair, src, dst, d):
        while not self.stop.is_set():
            if not pair[d]:
                time.sleep(0.02)    # cut: leave the bytes where they are
                continue
            try:
                r, _, _ = select.select([src], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            with self.lock:
                if not pair[d]:
                    continue
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b''
                if not data:
                    # a real close is forwarded as one
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    return

    def cut(self, direction=None):
        """Stops forwarding on every connection (direction 'c2s' or 's2c'
        only, or both)."""
        with self.lock:
            for p in self.pairs:
                for d in ('c2s', 's2c'):
                    if direction in (None, d):
                        p[d] = False

    def close(self):
        self.stop.set()
        with self.lock:
            for p in self.pairs:
                for k in ('c', 's'):
                    try:
                        p[k].close()
                    except OSError:
                        pass
        self.lsock.close()


# --------------------------------------------------------------------------
# A client that does stream management itself.

def is_stanza(el):
    return el.tag in ('{%s}message' % NS_CLIENT, '{%s}presence' % NS_CLIENT,
                      '{%s}iq' % NS_CLIENT)


def body(el):
    return el.findtext('{%s}body' % NS_CLIENT)


class SmClient:
    """Wraps a pvtest.RawClient: counts stanzas both ways once enabled,
    answers the server's <r/> (auto_ack) and pings, records its <a/>."""

    def __init__(self, c):
        self.c = c
        self.enabled = False
        self.h_in = 0           # stanzas received since <enabled/>
        self.h_out = 0          # stanzas sent since <enable/>
        self.server_r = 0
        self.server_a = []
        self.auto_ack = True
        self.smid = None

    def send(self, xml):
        self.c.send(xml)
        if self.enabled:
            self.h_out += 1

    def ack(self):
        self.c.send("<a xmlns='%s' h='%d'/>" % (NS_SM, self.h_in))

    def enable(self, resume=True):
        self.c.send("<enable xmlns='%s'%s/>" %
                    (NS_SM, " resume='true'" if resume else ''))
        el = self.c.recv()
        check_eq(el.tag, sm('enabled'), 'answer to <enable/>')
        self.enabled = True
        self.smid = el.get('id')
        if resume:
            check(self.smid, '<enabled/> without id: %s' % pvtest.tostr(el))
            check_eq(el.get('resume'), 'true', 'enabled resume')
            check(int(el.get('max', '0')) > 0, 'enabled without max')
        return el

    def next(self, timeout=None):
        """Next element that is not an ack nonza or a ping (stanzas are
        counted); TimeoutError when none comes within timeout."""
        timeout = self.c.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('nothing within %.1fs' % timeout)
            el = self.c.recv(left)
            if el.tag == sm('r'):
                self.server_r += 1
                if self.auto_ack:
                    self.ack()
                continue
            if el.tag == sm('a'):
                self.server_a.append(int(el.get('h')))
                continue
            if is_stanza(el):
                if self.enabled:
                    self.h_in += 1
                if el.tag == '{%s}iq' % NS_CLIENT and \
                        el.get('type') == 'get' and \
                        el.find('{%s}ping' % NS_PING) is not None:
                    self.send("<iq type='result' id='%s' to='%s'/>" %
                              (el.get('id'), el.get('from')))
                    continue
            return el

    def messages(self, n, timeout=None):
        """The bodies of the next n messages (other stanzas skipped)."""
        timeout = timeout or 20 * TF
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                pvtest.fail('only %d of %d messages within %.0fs (last %r)'
                            % (len(got), n, timeout, got[-1:]))
            try:
                el = self.next(left)
            except TimeoutError:
                continue
            if el.tag == '{%s}message' % NS_CLIENT:
                got.append(body(el))
        return got

    def drain(self, quiet=0.5):
        """Everything that still arrives until quiet seconds pass: message
        bodies."""
        got = []
        while True:
            # pings (short ping_idle) do not count as activity
            try:
                el = self.next(quiet * TF)
            except (TimeoutError, pvtest.StreamClosed):
                return got
            if el.tag == '{%s}message' % NS_CLIENT:
                got.append(body(el))

    def nothing(self, timeout=1.0):
        got = self.drain(timeout)
        check_eq(got, [], 'messages that should not arrive')


def client(srv, port=None):
    return pvtest.RawClient(srv.host('c2s'), port or srv.port('c2s'),
                            srv.domain, cafile=srv.cafile)


def sm_login(srv, user, resource, port=None, resume=True, enable=True):
    c = client(srv, port)
    c.login(user, srv.users[user], resource=resource)
    s = SmClient(c)
    if enable:
        s.enable(resume)
    return s


def authed(srv, user, port=None):
    """A stream authenticated as user, restarted, not bound; returns the
    RawClient (its post-auth features in .features)."""
    c = client(srv, port)
    c.connect()
    cond = c.auth(user, srv.users[user])
    check(cond is None, 'auth of %s failed: %s' % (user, cond))
    c.open_stream()
    return c


def resume(srv, user, old, h=None, port=None):
    """Resumes old (an SmClient) on a new connection; returns the new
    SmClient and the <resumed/> element."""
    c = authed(srv, user, port)
    check(c.features.find(sm('sm')) is not None,
          'no <sm/> in post-auth features')
    c.send("<resume xmlns='%s' previd='%s' h='%d'/>" %
           (NS_SM, old.smid, old.h_in if h is None else h))
    el = c.recv()
    check_eq(el.tag, sm('resumed'), 'answer to <resume/>: %s' %
             pvtest.tostr(el))
    check_eq(el.get('previd'), old.smid, 'resumed previd')
    s = SmClient(c)
    s.enabled = True
    s.smid = old.smid
    s.h_in = old.h_in if h is None else h
    s.h_out = old.h_out
    return s, el


def failed_condition(el):
    check_eq(el.tag, sm('failed'), 'expected <failed/>')
    for ch in el:
        if ch.tag.startswith('{%s}' % NS_STANZA_ERR):
            return ch.tag.split('}', 1)[1]
    return None


def send_numbered(sender, to, start, end, prefix='m'):
    """Chat messages with bodies prefix-start .. prefix-(end-1), in one
    write, then an IQ ping answered after all of them were routed."""
    out = ''.join("<message type='chat' to='%s' id='%s%d'><body>%s-%d"
                  "</body></message>" % (to, prefix, i, prefix, i)
                  for i in range(start, end))
    sender.send(out)
    sync(sender)


_ping_seq = [0]


def sync(c):
    """Round trip to the server: everything c sent before is routed."""
    _ping_seq[0] += 1
    c.iq("<iq type='get' id='sync%d' to='%s'><ping xmlns='%s'/></iq>" %
         (_ping_seq[0], c.domain, NS_PING), timeout=30 * TF)


def numbered(prefix, start, end):
    return ['%s-%d' % (prefix, i) for i in range(start, end)]


def offline_rows(srv, user):
    return sum(1 for k in pvtest.store_keys(srv, 'offline.queue')
               if k[:2] == (srv.domain, user))


def wait_rows(srv, user, n, timeout=10):
    deadline = time.monotonic() + timeout * TF
    got = offline_rows(srv, user)
    while got != n and time.monotonic() < deadline:
        time.sleep(0.1)
        got = offline_rows(srv, user)
    check_eq(got, n, 'offline rows of %s' % user)


# --------------------------------------------------------------------------
# Tests

@suite.test
def features_and_enable_before_bind():
    srv = server()
    c = authed(srv, 'carol')
    check(c.features.find(sm('sm')) is not None,
          'no <sm xmlns=urn:xmpp:sm:3/> after auth: %s' %
          pvtest.tostr(c.features))
    c.send("<enable xmlns='%s' resume='true'/>" % NS_SM)
    check_eq(failed_condition(c.recv()), 'unexpected-request',
             '<enable/> before bind')
    # the stream goes on: bind, then enable works once
    c.send("<iq type='set' id='b'><bind xmlns='%s'/></iq>" % pvtest.NS_BIND)
    check_eq(c.recv().get('type'), 'result', 'bind after failed enable')
    s = SmClient(c)
    s.enable()
    c.send("<enable xmlns='%s'/>" % NS_SM)
    check_eq(failed_condition(c.recv()), 'unexpected-request',
             'second <enable/>')
    c.close()


@suite.test
def r_answered_with_h():
    srv = server()
    s = sm_login(srv, 'dave', 'r', resume=False)
    s.send('<presence/>')
    for i in range(2):
        s.send("<iq type='get' id='p%d' to='%s'><ping xmlns='%s'/></iq>"
               % (i, srv.domain, NS_PING))
    s.c.send("<r xmlns='%s'/>" % NS_SM)
    # <a/> comes after the commit barrier; the stanzas' answers may
    # arrive around it
    deadline = time.monotonic() + 5 * TF
    while not s.server_a and time.monotonic() < deadline:
        try:
            s.next(0.2)
        except TimeoutError:
            pass
    check_eq(s.server_a, [3], "<a/> answering <r/> after 3 stanzas")
    # and again, counting on
    s.send('<presence><show>away</show></presence>')
    s.c.send("<r xmlns='%s'/>" % NS_SM)
    deadline = time.monotonic() + 5 * TF
    while len(s.server_a) < 2 and time.monotonic() < deadline:
        try:
            s.next(0.2)
        except TimeoutError:
            pass
    check_eq(s.server_a, [3, 4], 'second <a/>')
    s.c.close()


@suite.test
def server_requests_acks_and_counts_them():
    srv = server()
    bob = sm_login(srv, 'erin', 'phone')
    alice = srv.login('alice', resource='acks')
    send_numbered(alice, bob.c.jid, 0, 40, 'k')
    got = bob.messages(40)
    check_eq(got, numbered('k', 0, 40), 'messages')
    bob.drain(1.5)                      # the quiet-time <r/> too
    check(bob.server_r >= 1, 'server never sent <r/> for 40 stanzas')
    check(bob.server_r <= 12, 'server sent %d <r/> for 40 stanzas: not '
          'batched' % bob.server_r)
    # all acknowledged: a resumption replays nothing
    bob.c.close()                       # FIN without </stream>: hibernate
    time.sleep(0.3 * TF)
    new, el = resume(srv, 'erin', bob)
    check_eq(el.get('h'), '0', 'resumed h (erin sent no stanza)')
    new.nothing(1.0)
    # a too high h is a stream error
    new.c.send("<a xmlns='%s' h='%d'/>" % (NS_SM, new.h_in + 5))
    check_eq(new.c.expect_stream_error(), 'undefined-condition',
             'h above the sent count')
    # that ended the session for good
    c = authed(srv, 'erin')
    c.send("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, bob.smid))
    check_eq(failed_condition(c.recv()), 'item-not-found',
             'resume after handled-count-too-high')
    c.close()
    alice.close()


@suite.test
def partial_ack_replays_the_rest():
    srv = server()
    bob = sm_login(srv, 'frank', 'phone')
    bob.auto_ack = False
    alice = srv.login('alice', resource='partial')
    send_numbered(alice, bob.c.jid, 0, 10, 'p')
    check_eq(bob.messages(10), numbered('p', 0, 10), 'first pass')
    bob.c.close()
    time.sleep(0.3 * TF)
    # the client claims it handled only 4
    new, el = resume(srv, 'frank', bob, h=4)
    check_eq(new.messages(6), numbered('p', 4, 10), 'replayed in order')
    new.nothing(0.5)
    new.c.close()
    alice.close()


@suite.test
def stale_previd_item_not_found():
    srv = server()
    c = authed(srv, 'gina')
    c.send("<resume xmlns='%s' previd='no-such-session' h='0'/>" % NS_SM)
    check_eq(failed_condition(c.recv()), 'item-not-found', 'unknown previd')
    # the client may bind instead (XEP-0198 §5)
    c.send("<iq type='set' id='b'><bind xmlns='%s'/></iq>" % pvtest.NS_BIND)
    check_eq(c.recv().get('type'), 'result', 'bind after failed resume')
    c.close()
    # another user's id is unknown to this one too
    victim = sm_login(srv, 'hank', 'v')
    c = authed(srv, 'gina')
    c.send("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, victim.smid))
    check_eq(failed_condition(c.recv()), 'item-not-found',
             "someone else's previd")
    c.close()
    victim.c.close()


@suite.test
def clean_close_ends_session():
    srv = server()
    bob = sm_login(srv, 'ivy', 'phone')
    bob.auto_ack = False
    alice = srv.login('alice', resource='clean')
    send_numbered(alice, bob.c.jid, 0, 1, 'u')
    check_eq(bob.messages(1), ['u-0'], 'live message')
    # closed cleanly with u-0 unacknowledged: no hibernation, and u-0 is
    # not dropped but stored
    bob.c.send('</stream:stream>')
    check(bob.c.wait_closed(5 * TF), 'server did not close')
    send_numbered(alice, srv.jid('ivy'), 1, 2, 'u')
    wait_rows(srv, 'ivy', 2)
    c = authed(srv, 'ivy')
    c.send("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, bob.smid))
    check_eq(failed_condition(c.recv()), 'item-not-found',
             'resume after a clean close')
    c.close()
    again = sm_login(srv, 'ivy', 'again', enable=False)
    again.send('<presence/>')
    check_eq(again.messages(2), ['u-0', 'u-1'], 'from offline storage')
    again.nothing(0.5)
    again.c.close()
    alice.close()


@suite.test
def thousand_cut_and_resumed():
    srv = server()
    px = Proxy(srv.host('c2s'), srv.port('c2s'))
    try:
        bob = sm_login(srv, 'bob', 'phone', port=px.port)
        bob.send('<presence/>')
        alice = srv.login('alice', resource='sender1')
        send_numbered(alice, bob.c.jid, 0, 600)
        first = bob.messages(500)
        px.cut()
        # whatever was already forwarded still counts (like bytes that
        # made it before the radio died); then the connection is silent
        first += bob.drain(0.5)
        n = len(first)
        check_eq(first, numbered('m', 0, n), 'first part')
        check(n < 1000, 'nothing left for the resumption')
        # the rest goes to the session whose client is gone unnoticed
        send_numbered(alice, srv.jid('bob'), 600, 1000)
        new, el = resume(srv, 'bob', bob)
        check_eq(el.get('h'), str(bob.h_out),
                 'resumed h = stanzas bob sent')
        rest = new.messages(1000 - n)
        check_eq(first + rest, numbered('m', 0, 1000),
                 'every message exactly once and in order')
        new.nothing(1.0)
        # the session lives on
        send_numbered(alice, srv.jid('bob'), 1000, 1001)
        check_eq(new.messages(1), ['m-1000'], 'live after resumption')
        check_eq(offline_rows(srv, 'bob'), 0, 'nothing went offline')
        new.c.close()
        alice.close()
    finally:
        px.close()


@suite.test
def thousand_cut_window_expired():
    # ping notices the silent peer; the window is short
    srv = server('expiry', smacks_hibernation_timeout='2s',
                 ping_idle='1s', ping_timeout='1s')
    px = Proxy(srv.host('c2s'), srv.port('c2s'))
    try:
        bob = sm_login(srv, 'bob', 'phone', port=px.port)
        bob.send('<presence/>')
        alice = srv.login('alice', resource='sender2')
        send_numbered(alice, bob.c.jid, 0, 600)
        first = bob.messages(500)
        # the downlink dies first; what got through is acknowledged
        # before the uplink dies too, so nothing is delivered twice
        px.cut('s2c')
        first += bob.drain(0.5)
        n = len(first)
        check_eq(first, numbered('m', 0, n), 'first part')
        bob.ack()
        time.sleep(0.5 * TF)
        px.cut()
        # ping_idle is short here and alice does not answer pings: a new
        # connection for the second half
        alice.close()
        alice = srv.login('alice', resource='sender3')
        send_numbered(alice, srv.jid('bob'), 600, 1000)
        alice.close()
        # ping (1s + 1s) finds the peer gone, 2s of hibernation, then
        # every unacknowledged message is stored
        wait_rows(srv, 'bob', 1000 - n, timeout=20)
        c = authed(srv, 'bob')
        c.send("<resume xmlns='%s' previd='%s' h='%d'/>" %
               (NS_SM, bob.smid, bob.h_in))
        check_eq(failed_condition(c.recv()), 'item-not-found',
                 'resume after the window')
        c.close()
        fresh = sm_login(srv, 'bob', 'fresh', enable=False)
        fresh.send('<presence/>')
        rest = fresh.messages(1000 - n)
        check_eq(first + rest, numbered('m', 0, 1000),
                 'every message exactly once, in order, via offline')
        fresh.nothing(1.0)
        fresh.c.close()
    finally:
        px.close()


@suite.test
def hibernated_survives_then_shutdown_stores():
    if pvtest.available_modules(['smacks', 'offline']) != ['smacks',
                                                           'offline']:
        pvtest.skip('mod_smacks or mod_offline not built')
    srv = suite.server(name='smacks-shutdown', users=USERS, modules=MODULES,
                       **BASE_CONF)
    srv.start()
    bob = sm_login(srv, 'bob', 'phone')
    bob.auto_ack = False
    bob.send('<presence/>')
    alice = srv.login('alice', resource='s')
    send_numbered(alice, bob.c.jid, 0, 3, 's')
    check_eq(bob.messages(3), numbered('s', 0, 3), 'live, unacked')
    bob.c.close()                       # dropped without </stream>
    time.sleep(0.5 * TF)
    # a normal message stream to the hibernated session: queued there,
    # not stored offline, nothing bounces
    send_numbered(alice, srv.jid('bob'), 3, 20, 's')
    check_eq(offline_rows(srv, 'bob'), 0,
             'messages to a hibernated session went offline')
    alice.close()
    srv.stop()
    srv.start()
    fresh = sm_login(srv, 'bob', 'after', enable=False)
    fresh.send('<presence/>')
    check_eq(fresh.messages(20), numbered('s', 0, 20),
             'unacknowledged messages stored at shutdown')
    fresh.nothing(1.0)
    fresh.c.close()


@suite.test
def queue_limit_ends_hibernated_session():
    srv = server('limit', smacks_max_unacked=10)
    bob = sm_login(srv, 'carol', 'phone')
    bob.auto_ack = False
    bob.c.close()
    time.sleep(0.3 * TF)
    alice = srv.login('alice', resource='lim')
    send_numbered(alice, srv.jid('carol') + '/phone', 0, 15, 'q')
    # over the limit the session ends and all 15 are stored
    wait_rows(srv, 'carol', 15)
    c = authed(srv, 'carol')
    c.send("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, bob.smid))
    check_eq(failed_condition(c.recv()), 'item-not-found',
             'resume after the queue limit')
    c.close()
    fresh = sm_login(srv, 'carol', 'again', enable=False)
    fresh.send('<presence/>')
    check_eq(fresh.messages(15), numbered('q', 0, 15), 'stored in order')
    fresh.c.close()
    alice.close()



NS_SASL2 = 'urn:xmpp:sasl:2'
NS_BIND2 = 'urn:xmpp:bind:0'


def sasl2_authenticate(srv, user, inner):
    """SASL2 PLAIN with inline elements (XEP-0388); returns the RawClient
    and the <success/> element. Skips when SASL2 is not offered."""
    import base64
    c = client(srv)
    f = c.connect()
    auth = f.find('{%s}authentication' % NS_SASL2)
    if auth is None:
        c.close()
        pvtest.skip('server offers no SASL2')
    mechs = [m.text for m in auth.findall('{%s}mechanism' % NS_SASL2)]
    if 'PLAIN' not in mechs:
        c.close()
        pvtest.skip('SASL2 without PLAIN')
    inline = auth.find('{%s}inline' % NS_SASL2)
    check(inline is not None and inline.find(sm('sm')) is not None,
          'no inline <sm/> in SASL2 features: %s' % pvtest.tostr(auth))
    b2 = inline.find('{%s}bind' % NS_BIND2)
    check(b2 is not None and any(
        x.get('var') == NS_SM for x in b2.iter('{%s}feature' % NS_BIND2)),
        'no Bind2 <feature var=urn:xmpp:sm:3/>: %s' % pvtest.tostr(inline))
    ir = base64.b64encode(('\0%s\0%s' % (user, srv.users[user])).encode())
    c.send("<authenticate xmlns='%s' mechanism='PLAIN'><initial-response>"
           "%s</initial-response>%s</authenticate>" %
           (NS_SASL2, ir.decode(), inner))
    el = c.recv()
    check_eq(el.tag, '{%s}success' % NS_SASL2, 'SASL2 answer: %s' %
             pvtest.tostr(el))
    return c, el


@suite.test
def sasl2_inline_enable_and_resume():
    srv = server()
    c, ok = sasl2_authenticate(
        srv, 'dave', "<bind xmlns='%s'><tag>t</tag><enable xmlns='%s' "
        "resume='true'/></bind>" % (NS_BIND2, NS_SM))
    en = ok.find('{%s}bound/%s' % (NS_BIND2, sm('enabled')))
    check(en is not None and en.get('id'),
          '<enabled/> missing in <bound/>: %s' % pvtest.tostr(ok))
    jid = ok.findtext('{%s}authorization-identifier' % NS_SASL2)
    bob = SmClient(c)
    bob.enabled = True
    bob.smid = en.get('id')
    bob.auto_ack = False
    alice = srv.login('alice', resource='s2')
    send_numbered(alice, jid, 0, 5, 'i')
    check_eq(bob.messages(5), numbered('i', 0, 5), 'live')
    c.close()
    time.sleep(0.3 * TF)
    c2, ok2 = sasl2_authenticate(
        srv, 'dave', "<resume xmlns='%s' previd='%s' h='2'/>"
        "<bind xmlns='%s'/>" % (NS_SM, bob.smid, NS_BIND2))
    r = ok2.find(sm('resumed'))
    check(r is not None, 'no <resumed/> in <success/>: %s' %
          pvtest.tostr(ok2))
    check(ok2.find('{%s}bound' % NS_BIND2) is None,
          'bound as well as resumed')
    new = SmClient(c2)
    new.enabled = True
    new.h_in = 2
    check_eq(new.messages(3), numbered('i', 2, 5), 'replayed after success')
    c2.close()
    time.sleep(0.3 * TF)
    c3, ok3 = sasl2_authenticate(
        srv, 'dave', "<resume xmlns='%s' previd='stale' h='0'/>"
        "<bind xmlns='%s'/>" % (NS_SM, NS_BIND2))
    check_eq(failed_condition(ok3.find(sm('failed'))), 'item-not-found',
             'inline resume of a stale id')
    check(ok3.find('{%s}bound' % NS_BIND2) is not None,
          'no Bind2 after a failed inline resume')
    c3.close()
    alice.close()

if __name__ == '__main__':
    suite.main()
