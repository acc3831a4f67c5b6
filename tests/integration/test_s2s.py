#!/usr/bin/python3
"""Federation (issue 8): two palaverd on 127.0.0.2 and 127.0.0.3 serving
a.example and b.example (s2s on 5269 each, certificates from one test CA,
s2s_override pointing each at the other): messages and presence
subscriptions both ways, a bounce for a domain that cannot exist, a peer
whose certificate names another domain (refused under s2s_secure_auth,
accepted by dialback when listed in s2s_insecure_domains), and Debian's
Prosody as a third peer with SASL EXTERNAL and with dialback."""

import os
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pvtest                                          # noqa: E402
import pvcaps                                          # noqa: E402
from pvtest import check, check_eq, NS_CLIENT          # noqa: E402
import s2s_helpers                                     # noqa: E402
from s2s_helpers import PalaverPeer, ProsodyPeer, DnsStub  # noqa: E402

suite = pvtest.Suite('test_s2s')
CA_DIR = tempfile.mkdtemp(prefix='pvtest-s2s-ca-')
pvtest.make_ca(CA_DIR)

A, B, C, D, E, F, H = ('a.example', 'b.example', 'c.example', 'd.example',
                       'e.example', 'f.example', 'h.example')
K, M = 'k.example', 'm.example'
ADDR = {A: '127.0.0.2', B: '127.0.0.3', C: '127.0.0.4', D: '127.0.0.5',
        E: '127.0.0.6', F: '127.0.0.7', H: '127.0.0.11', K: '127.0.0.15',
        M: '127.0.0.16'}
DNS_ADDR = '127.0.0.9'
PW = 'secret-pw-1'

_shared = {}


def pair():
    """a.example and b.example, started once for the tests that do not
    disturb each other."""
    if 'ab' not in _shared:
        a = PalaverPeer(suite, A, ADDR[A], CA_DIR,
                        {B: ADDR[B], C: ADDR[C], D: ADDR[D], K: ADDR[K],
                         H: 'tls://%s:5270' % ADDR[H]},
                        {'alice': PW, 'anna': PW})
        b = PalaverPeer(suite, B, ADDR[B], CA_DIR,
                        {A: ADDR[A], C: ADDR[C], K: ADDR[K], M: ADDR[M],
                         'i.example': '127.0.0.12'},
                        {'bob': PW, 'bert': PW})
        a.start()
        b.start()
        _shared['ab'] = (a, b)
    return _shared['ab']


def is_msg(body):
    return lambda e: (e.tag == '{%s}message' % NS_CLIENT and
                      e.findtext('{%s}body' % NS_CLIENT) == body)


def presence_from(jid, ptype=None):
    def pred(e):
        return (e.tag == '{%s}presence' % NS_CLIENT and
                (e.get('from') or '').split('/')[0] == jid and
                e.get('type') == ptype)
    return pred


def log_has(srv, text):
    return text in srv.log_text()


@suite.test
def test_message_both_ways():
    a, b = pair()
    alice = a.login('alice', PW, resource='r1')
    bob = b.login('bob', PW, resource='r1')
    alice.send('<presence/>')
    bob.send('<presence/>')
    pvtest.message_round_trip(alice, bob)
    # and a second message over the links that are now up
    pvtest.message_round_trip(bob, alice)
    # certificates validate both ways: SASL EXTERNAL, no dialback needed
    check(log_has(a, 'authenticated (SASL EXTERNAL)') and
          log_has(b, 'authenticated (SASL EXTERNAL)'),
          'links did not authenticate with SASL EXTERNAL')
    # to a bare JID of an account with an available resource
    alice.send("<message type='chat' to='bob@b.example'><body>bare-1"
               "</body></message>")
    m = bob.recv_until(is_msg('bare-1'), what='message to bare JID')
    check_eq(m.get('from'), alice.jid, 'from')
    # the remote router's error for an unknown account comes back
    alice.send("<message type='chat' id='nob1' to='nobody@b.example'>"
               "<body>?</body></message>")
    e = alice.recv_until(lambda e: e.get('id') == 'nob1',
                         what='error from b.example')
    check_eq(pvtest.stanza_error(e), ('cancel', 'service-unavailable'),
             'error for an unknown remote account')
    check_eq(e.get('from'), 'nobody@b.example', 'from of the error')
    alice.close()
    bob.close()


@suite.test
def test_presence_subscription_both_ways():
    a, b = pair()
    anna = a.login('anna', PW, resource='p')
    bert = b.login('bert', PW, resource='p')
    anna.send('<presence/>')
    bert.send('<presence/>')
    for (x, xj), (y, yj) in (((anna, 'anna@a.example'),
                              (bert, 'bert@b.example')),
                             ((bert, 'bert@b.example'),
                              (anna, 'anna@a.example'))):
        x.send("<presence type='subscribe' to='%s'/>" % yj)
        y.recv_until(presence_from(xj, 'subscribe'),
                     what='subscribe from %s' % xj)
        y.send("<presence type='subscribed' to='%s'/>" % xj)
        x.recv_until(presence_from(yj, 'subscribed'),
                     what='subscribed from %s' % yj)
        # the contact's current presence follows the approval
        x.recv_until(presence_from(yj, None),
                     what='available presence of %s' % yj)
    # mutual subscription: a presence change reaches the other side
    anna.send('<presence><show>away</show></presence>')
    p = bert.recv_until(presence_from('anna@a.example', None),
                        what='presence update of anna')
    check_eq(p.findtext('{%s}show' % NS_CLIENT), 'away', 'show')
    anna.close()
    bert.close()


@suite.test
def test_bounce_nonexistent_domain():
    a, _ = pair()
    c = a.login('alice', PW, resource='bounce')
    c.send("<message type='chat' id='nx1' to='someone@nothing.invalid'>"
           "<body>hello?</body></message>")
    e = c.recv_until(lambda e: e.tag == '{%s}message' % NS_CLIENT and
                     e.get('id') == 'nx1', what='bounce')
    check_eq(e.get('type'), 'error', 'type')
    check_eq(pvtest.stanza_error(e)[1], 'remote-server-not-found',
             'condition')
    check_eq(e.get('from'), 'someone@nothing.invalid', 'from of bounce')
    # no error ever goes back for an error
    c.send("<message type='error' id='nx2' to='someone@nothing.invalid'/>")
    c.send("<iq type='get' id='ping1' to='a.example'>"
           "<ping xmlns='urn:xmpp:ping'/></iq>")
    el = c.recv_until(lambda e: e.get('id') in ('nx2', 'ping1'),
                      what='ping answer')
    check_eq(el.get('id'), 'ping1', 'first answer after the error')
    c.close()


@suite.test
def test_wrong_certificate_refused_then_dialback():
    a, _ = pair()
    # d.example presents a certificate for another name
    d = PalaverPeer(suite, D, ADDR[D], CA_DIR, {A: ADDR[A], E: ADDR[E]},
                    {'dave': PW}, cert_name='wrong.example',
                    s2s_insecure_domains=[E])
    d.start()
    alice = a.login('alice', PW, resource='wrong')
    alice.send("<message type='chat' id='w1' to='dave@d.example'>"
               "<body>hi</body></message>")
    e = alice.recv_until(lambda e: e.get('id') == 'w1', what='bounce')
    check_eq(pvtest.stanza_error(e)[1], 'remote-server-not-found',
             'condition for a peer with a wrong certificate')
    alice.close()
    # e.example lists d.example as insecure: dialback is allowed both ways
    e_srv = PalaverPeer(suite, E, ADDR[E], CA_DIR, {D: ADDR[D]},
                        {'eve': PW}, s2s_insecure_domains=[D])
    e_srv.start()
    eve = e_srv.login('eve', PW, resource='r')
    dave = d.login('dave', PW, resource='r')
    eve.send('<presence/>')
    dave.send('<presence/>')
    pvtest.message_round_trip(eve, dave)
    pvtest.message_round_trip(dave, eve)
    check(log_has(e_srv, 'authenticated (dialback)'),
          'e.example did not authenticate d.example by dialback')
    eve.close()
    dave.close()


@suite.test
def test_direct_tls():
    a, _ = pair()
    # a.example reaches h.example only by XEP-0368 direct TLS (tls://)
    h = PalaverPeer(suite, H, ADDR[H], CA_DIR, {A: ADDR[A]}, {'hank': PW},
                    direct_tls_port=5270)
    h.start()
    alice = a.login('alice', PW, resource='dtls')
    hank = h.login('hank', PW, resource='dtls')
    alice.send('<presence/>')
    hank.send('<presence/>')
    pvtest.message_round_trip(alice, hank)
    check(log_has(a, 'a.example->h.example: authenticated (SASL EXTERNAL)'),
          'direct TLS link not authenticated')
    check('(direct TLS)' in a.log_text(), 'a.example did not use direct TLS')
    alice.close()
    hank.close()


@suite.test
def test_reload_override():
    _, b = pair()
    # b.example is first sent to an address where nothing listens
    i = PalaverPeer(suite, 'i.example', '127.0.0.12', CA_DIR,
                    {B: '127.0.0.13'}, {'ivy': PW})
    i.start()
    ivy = i.login('ivy', PW, resource='r')
    ivy.send("<message type='chat' id='rl1' to='bob@b.example'>"
             "<body>x</body></message>")
    e = ivy.recv_until(lambda e: e.get('id') == 'rl1', what='bounce')
    check_eq(pvtest.stanza_error(e)[1], 'remote-server-not-found',
             'nothing listening')
    # SIGHUP applies a corrected s2s_override without a restart
    i.config['s2s_override'] = [{'domain': B,
                                 'target': '%s:5269' % ADDR[B]}]
    i.write_config()
    i.proc.send_signal(pvtest.signal.SIGHUP)
    deadline = pvtest.time.monotonic() + 10 * pvtest.time_factor()
    while 'configuration reloaded' not in i.log_text():
        check(pvtest.time.monotonic() < deadline, 'no reload')
        pvtest.time.sleep(0.05)
    bob = b.login('bob', PW, resource='rl')
    bob.send('<presence/>')
    pvtest.message_round_trip(ivy, bob)
    ivy.close()
    bob.close()


@suite.test
def test_idle_link_closed_and_reopened():
    _, b = pair()
    j = PalaverPeer(suite, 'j.example', '127.0.0.14', CA_DIR,
                    {B: ADDR[B]}, {'jo': PW}, s2s_idle_timeout='1s')
    j.start()
    jo = j.login('jo', PW, resource='r')
    bob = b.login('bob', PW, resource='idle')
    bob.send('<presence/>')
    for n in (1, 2):
        jo.send("<message type='chat' to='bob@b.example/idle'>"
                "<body>idle-%d</body></message>" % n)
        bob.recv_until(is_msg('idle-%d' % n), what='message %d' % n)
        deadline = pvtest.time.monotonic() + 10 * pvtest.time_factor()
        while j.log_text().count('j.example->b.example: idle, closing') < n:
            check(pvtest.time.monotonic() < deadline,
                  'link %d not closed by s2s_idle_timeout' % n)
            pvtest.time.sleep(0.1)
    check_eq(j.log_text().count('j.example->b.example: connecting'), 2,
             'links opened')
    jo.close()
    bob.close()


@suite.test
def test_module_replies_reach_remote_senders():
    """IQs answered by modules (ping, version, disco) go back over s2s to
    a sender on another server."""
    a, b = pair()
    alice = a.login('alice', PW, resource='rr')
    for n, payload in enumerate((
            "<ping xmlns='urn:xmpp:ping'/>",
            "<query xmlns='jabber:iq:version'/>",
            "<query xmlns='http://jabber.org/protocol/disco#info'/>")):
        alice.send("<iq type='get' id='rr%d' to='b.example'>%s</iq>"
                   % (n, payload))
        r = alice.recv_until(lambda e, n=n: e.get('id') == 'rr%d' % n,
                             what='reply %d from b.example' % n)
        check_eq(r.get('type'), 'result', 'reply to %s' % payload)
        check_eq(r.get('from'), B, 'from of the reply')
    # an unknown namespace: the router's error comes back too
    alice.send("<iq type='get' id='rr-x' to='bob@b.example'>"
               "<query xmlns='urn:example:nothing'/></iq>")
    r = alice.recv_until(lambda e: e.get('id') == 'rr-x', what='error')
    check_eq(pvtest.stanza_error(r)[1], 'service-unavailable', 'error')
    alice.close()


@suite.test
def test_domain_policy():
    """s2s_deny_domains and s2s_allow_domains: refused both ways, the
    sender told why; allowed domains federate as usual."""
    a, b = pair()
    k = PalaverPeer(suite, K, ADDR[K], CA_DIR, {A: ADDR[A], B: ADDR[B],
                                                C: ADDR[C]},
                    {'kim': PW}, s2s_allow_domains=[A, B, '*.sub.example'],
                    s2s_deny_domains=[B])
    k.start()
    kim = k.login('kim', PW, resource='r')
    kim.send('<presence/>')
    alice = a.login('alice', PW, resource='pol')
    alice.send('<presence/>')
    pvtest.message_round_trip(kim, alice)
    # denied (deny wins over allow) and not allowed: bounced at once
    for n, to in enumerate(('bob@b.example', 'carol@c.example')):
        kim.send("<message type='chat' id='kp%d' to='%s'><body>x</body>"
                 "</message>" % (n, to))
        e = kim.recv_until(lambda e, n=n: e.get('id') == 'kp%d' % n,
                           what='policy bounce for %s' % to)
        check_eq(pvtest.stanza_error(e), ('cancel', 'not-allowed'),
                 'error for %s' % to)
    check('k.example->b.example: connecting' not in k.log_text(),
          'a link to a denied domain was attempted')
    # b.example's server is refused with a stream error; bob gets a bounce
    bob = b.login('bob', PW, resource='pol')
    bob.send("<message type='chat' id='bp1' to='kim@k.example'>"
             "<body>y</body></message>")
    e = bob.recv_until(lambda e: e.get('id') == 'bp1', what='bounce at b')
    check_eq(e.get('type'), 'error', 'bounce type')
    check(log_has(k, 'b.example is not allowed to federate'),
          'k.example did not refuse b.example')
    kim.close()
    alice.close()
    bob.close()


@suite.test
def test_rate_limit_pauses_without_loss():
    """s2s_rate_limit: a remote domain sending faster than its rate is
    paused (TCP pushes back), and every stanza still arrives in order."""
    _, b = pair()
    m = PalaverPeer(suite, M, ADDR[M], CA_DIR, {B: ADDR[B]}, {'mia': PW},
                    s2s_rate_limit='2K')
    m.start()
    mia = m.login('mia', PW, resource='r')
    mia.send('<presence/>')
    bob = b.login('bob', PW, resource='rate')
    pad = 'p' * 200
    n = 40
    for i in range(n):
        bob.send("<message type='chat' to='mia@m.example/r'>"
                 "<body>rate-%d %s</body></message>" % (i, pad))
    got = []
    while len(got) < n:
        e = mia.recv_until(lambda e: e.tag == '{%s}message' % NS_CLIENT,
                           what='message %d of %d' % (len(got), n))
        got.append(e.findtext('{%s}body' % NS_CLIENT).split()[0])
    check_eq(got, ['rate-%d' % i for i in range(n)], 'order and loss')
    check(log_has(m, 'b.example: over s2s_rate_limit, pausing'),
          'the link was never paused')
    mia.close()
    bob.close()


NS_PUBSUB = 'http://jabber.org/protocol/pubsub'


def caps_client(srv, user, resource, notify):
    """A logged-in client that advertises XEP-0115 caps with +notify for
    the given nodes and answers the servers' disco#info about them."""
    c = srv.login(user, PW, resource=resource)
    c.caps = pvcaps.Caps(notify, name='fed-test', node='urn:example:fed')
    return c


def recv_answering_caps(c, pred, what):
    return pvcaps.expect(c, pred, what=what,
                         timeout=15 * pvtest.time_factor())


@suite.test
def test_pep_across_domains():
    """PEP (XEP-0163) between servers: the publisher's server learns the
    remote contact's +notify interest from its caps (a disco#info query
    over s2s), notifies it, and serves items to the contact but not to a
    remote stranger."""
    a, b = pair()
    node = 'urn:example:fed-tune'
    alice = caps_client(a, 'alice', 'pep', [])
    bob = caps_client(b, 'bob', 'pep', [node])
    bert = b.login('bert', PW, resource='pep-stranger')
    for c in (alice, bob):
        c.send('<presence>%s</presence>' % c.caps.element())
    for x, xj, y, yj in ((alice, 'alice@a.example', bob, 'bob@b.example'),
                         (bob, 'bob@b.example', alice, 'alice@a.example')):
        x.send("<presence type='subscribe' to='%s'/>" % yj)
        recv_answering_caps(y, presence_from(xj, 'subscribe'),
                            'subscribe from %s' % xj)
        y.send("<presence type='subscribed' to='%s'/>" % xj)
        recv_answering_caps(x, presence_from(yj, 'subscribed'),
                            'subscribed from %s' % yj)
    recv_answering_caps(alice, presence_from('bob@b.example'),
                        "bob's presence with caps")
    # the caps query for bob's hash crosses to b.example and is answered
    pvtest.time.sleep(0.5)
    pvcaps.pump(bob)
    alice.send("<iq type='set' id='pub1'><pubsub xmlns='%s'>"
               "<publish node='%s'><item id='t1'><tune xmlns='%s'>"
               "<title>Federated</title></tune></item></publish></pubsub>"
               "</iq>" % (NS_PUBSUB, node, node))
    r = recv_answering_caps(alice, lambda e: e.get('id') == 'pub1',
                            'publish result')
    check_eq(r.get('type'), 'result', 'publish')
    ev = recv_answering_caps(
        bob, lambda e: e.tag == '{%s}message' % NS_CLIENT and
        e.find('{%s#event}event' % NS_PUBSUB) is not None,
        'PEP notification at b.example')
    check_eq(ev.get('from'), 'alice@a.example', 'notification from')
    item = ev.find('{%s#event}event/{%s#event}items/{%s#event}item'
                   % (NS_PUBSUB, NS_PUBSUB, NS_PUBSUB))
    check(item is not None and item.get('id') == 't1',
          'notification item: %s' % pvtest.tostr(ev))
    # items: the contact may read them, a remote stranger may not
    bob.send("<iq type='get' id='get1' to='alice@a.example'><pubsub "
             "xmlns='%s'><items node='%s'/></pubsub></iq>"
             % (NS_PUBSUB, node))
    r = recv_answering_caps(bob, lambda e: e.get('id') == 'get1',
                            'items result')
    check_eq(r.get('type'), 'result', 'items for a remote contact')
    check(r.find('.//{%s}item' % NS_PUBSUB) is not None,
          'no item: %s' % pvtest.tostr(r))
    bert.send("<iq type='get' id='get2' to='alice@a.example'><pubsub "
              "xmlns='%s'><items node='%s'/></pubsub></iq>"
              % (NS_PUBSUB, node))
    r = bert.recv_until(lambda e: e.get('id') == 'get2',
                        what='answer for a stranger')
    check_eq(r.get('type'), 'error', 'items for a remote stranger')
    for c in (alice, bob, bert):
        c.close()


def syn_blackhole(addr):
    """A listening socket on addr whose accept queue is full: the kernel
    drops further SYNs, so a connect to it hangs (no answer, no RST), like
    an address behind a broken route."""
    lsock = pvtest.socket.socket()
    lsock.bind((addr, 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fill = []
    for _ in range(3):
        c = pvtest.socket.socket()
        c.setblocking(False)
        try:
            c.connect((addr, port))
        except BlockingIOError:
            pass
        fill.append(c)
    pvtest.time.sleep(0.2)
    return lsock, port, fill


@suite.test
def test_happy_eyeballs():
    """The first address never answers: the next one is tried after a
    short delay, in parallel, and wins well before s2s_connect_timeout."""
    _, b = pair()
    lsock, port, fill = syn_blackhole('127.0.0.17')
    n = PalaverPeer(suite, 'n.example', '127.0.0.18', CA_DIR, {},
                    {'nia': PW}, s2s_connect_timeout='20s',
                    s2s_override=[{'domain': B,
                                   'target': ['127.0.0.17:%d' % port,
                                              '%s:5269' % ADDR[B]]}])
    n.start()
    try:
        nia = n.login('nia', PW, resource='r')
        bob = b.login('bob', PW, resource='he')
        bob.send('<presence/>')
        t0 = pvtest.time.monotonic()
        nia.send("<message type='chat' to='bob@b.example/he'>"
                 "<body>eyeballs</body></message>")
        bob.recv_until(is_msg('eyeballs'), what='message over 2nd address',
                       timeout=15 * pvtest.time_factor())
        # sequential attempts would wait for the silent address until the
        # 20 s connect timeout and then bounce
        check(pvtest.time.monotonic() - t0 < 15,
              'the message waited for the silent address')
        check(log_has(n, 'connected to [%s]:5269' % ADDR[B]),
              'not connected to the second address')
        nia.close()
        bob.close()
    finally:
        lsock.close()
        for c in fill:
            c.close()


class RawS2S(pvtest.RawClient):
    """A hand-driven server-to-server stream (jabber:server), optionally
    presenting a client certificate (cert, key) after STARTTLS."""

    def __init__(self, addr, to, frm, cafile, cert=None):
        super().__init__(addr, s2s_helpers.S2S_PORT, to, cafile=cafile)
        self.frm = frm
        self.cert = cert

    def _ctx(self):
        ctx = pvtest.ssl.create_default_context(cafile=self.cafile)
        if self.cert:
            ctx.load_cert_chain(*self.cert)
        return ctx

    def open_stream(self, to=None, prefix=b'', header=None, lang='en'):
        if header is None:
            header = ("<?xml version='1.0'?><stream:stream "
                      "xmlns='jabber:server' "
                      "xmlns:stream='http://etherx.jabber.org/streams' "
                      "xmlns:db='jabber:server:dialback' from='%s' "
                      "to='%s' version='1.0'>" % (self.frm, to or self.domain))
        return super().open_stream(to, prefix, header, lang)


NS_DB = 'jabber:server:dialback'


def raw_s2s(b, frm, cert=None):
    return RawS2S(b.addr, b.domain, frm, b.cafile, cert=cert)


@suite.test
def test_incoming_stream_rules():
    a, b = pair()
    # no TLS: STARTTLS is required, nothing else is offered
    r = raw_s2s(b, A)
    f = r.open_stream()
    check(f is not None and f.find('{%s}starttls/{%s}required'
                                   % (pvtest.NS_TLS, pvtest.NS_TLS))
          is not None, 'STARTTLS not required: %s' % pvtest.tostr(f))
    check(f.find('{urn:xmpp:features:dialback}dialback') is None,
          'dialback offered before TLS')
    r.send("<message from='alice@a.example' to='bob@b.example'>"
           "<body>clear</body></message>")
    check_eq(r.expect_stream_error(), 'policy-violation', 'cleartext stanza')
    # unknown host, wrong namespace
    r = raw_s2s(b, A)
    r.open_stream(to='nowhere.example')
    check_eq(r.expect_stream_error(), 'host-unknown', 'unknown to')
    r = raw_s2s(b, A)
    r.open_stream(header="<stream:stream xmlns='jabber:client' xmlns:stream="
                  "'http://etherx.jabber.org/streams' to='b.example' "
                  "version='1.0'>")
    check_eq(r.expect_stream_error(), 'invalid-namespace', 'jabber:client')
    # TLS without a client certificate: dialback only, and s2s_secure_auth
    # refuses it; stanzas before authentication end the stream
    r = raw_s2s(b, 'evil.example')
    r.open_stream()
    f = r.starttls()
    check(f.find('{urn:xmpp:features:dialback}dialback') is not None,
          'no dialback offered after TLS')
    check_eq(r.mechanisms(f), [], 'SASL mechanisms without a certificate')
    r.send("<db:result from='evil.example' to='b.example'>abcd</db:result>")
    el = r.recv_until(lambda e: e.tag == '{%s}result' % NS_DB,
                      what='db:result answer')
    check_eq(el.get('type'), 'error', 'dialback without a certificate')
    # a made-up key is not confirmed by the authoritative server
    r.send("<db:verify from='evil.example' to='b.example' id='x1'>"
           "%s</db:verify>" % ('0' * 64))
    el = r.recv_until(lambda e: e.tag == '{%s}verify' % NS_DB,
                      what='db:verify answer')
    check_eq(el.get('type'), 'invalid', 'forged dialback key')
    r.send("<message from='x@evil.example' to='bob@b.example'>"
           "<body>unauth</body></message>")
    check_eq(r.expect_stream_error(), 'not-authorized',
             'stanza before authentication')


@suite.test
def test_incoming_sasl_external_and_addressing():
    a, b = pair()
    bob = b.login('bob', PW, resource='raw')
    bob.send('<presence/>')
    # a.example's certificate, presented by a hand-written peer
    r = raw_s2s(b, A, cert=(a.cert, a.key))
    r.open_stream()
    f = r.starttls()
    check('EXTERNAL' in r.mechanisms(f), 'EXTERNAL not offered for a '
          'valid certificate: %s' % pvtest.tostr(f))
    # an authorization identity other than the stream's domain fails
    r.send("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>"
           % (pvtest.NS_SASL,
              pvtest.base64.b64encode(b'b.example').decode()))
    el = r.recv()
    check_eq(el.tag, '{%s}failure' % pvtest.NS_SASL, 'wrong authzid')
    r.send("<auth xmlns='%s' mechanism='EXTERNAL'>=</auth>"
           % pvtest.NS_SASL)
    el = r.recv()
    check_eq(el.tag, '{%s}success' % pvtest.NS_SASL, 'EXTERNAL')
    r.open_stream()
    r.send("<message from='alice@a.example/x' to='bob@b.example/raw' "
           "type='chat'><body>raw-1</body></message>")
    m = bob.recv_until(is_msg('raw-1'), what='message over raw s2s')
    check_eq(m.get('from'), 'alice@a.example/x', 'from')
    # a domain the stream did not authenticate
    r.send("<message from='mallory@c.example' to='bob@b.example'>"
           "<body>forged</body></message>")
    check_eq(r.expect_stream_error(), 'invalid-from', 'forged from')
    bob.close()


@suite.test
def test_timeout_bounces_queue():
    # a peer that accepts TCP and never says a word
    silent = pvtest.socket.socket()
    silent.setsockopt(pvtest.socket.SOL_SOCKET,
                      pvtest.socket.SO_REUSEADDR, 1)
    silent.bind(('127.0.0.8', s2s_helpers.S2S_PORT))
    silent.listen(4)
    try:
        g = PalaverPeer(suite, 'g.example', '127.0.0.10', CA_DIR,
                        {'silent.example': '127.0.0.8'}, {'gus': PW},
                        s2s_connect_timeout='2s', s2s_queue_max=3)
        g.start()
        gus = g.login('gus', PW, resource='t')
        for i in range(5):
            gus.send("<message type='chat' id='t%d' to='x@silent.example'>"
                     "<body>%d</body></message>" % (i, i))
        # s2s_queue_max: what does not fit is refused at once
        for i in (3, 4):
            e = gus.recv_until(lambda e, i=i: e.get('id') == 't%d' % i,
                               timeout=1.5, what='queue-full bounce %d' % i)
            check_eq(pvtest.stanza_error(e)[1], 'resource-constraint',
                     'condition past s2s_queue_max')
        for i in range(3):
            e = gus.recv_until(lambda e, i=i: e.get('id') == 't%d' % i,
                               timeout=30 * pvtest.time_factor(),
                               what='bounce %d' % i)
            check_eq(pvtest.stanza_error(e)[1], 'remote-server-timeout',
                     'condition after s2s_connect_timeout')
        gus.close()
    finally:
        silent.close()


_dns = []


def dns_stub():
    if not _dns:
        try:
            _dns.append(DnsStub(DNS_ADDR, {A: ADDR[A], B: ADDR[B],
                                           F: ADDR[F]}))
        except OSError as ex:
            raise pvtest.Skip('cannot run the DNS stub on %s:53: %s'
                              % (DNS_ADDR, ex))
    return _dns[0]


@suite.test
def test_prosody_sasl_external():
    if not shutil.which('prosody'):
        raise pvtest.Skip('prosody not installed')
    dns_stub()
    a, _ = pair()
    p = ProsodyPeer(suite, C, ADDR[C], CA_DIR, DNS_ADDR, {'carol': PW})
    p.start()
    alice = a.login('alice', PW, resource='pro')
    carol = p.login('carol', PW, resource='pro')
    alice.send('<presence/>')
    carol.send('<presence/>')
    pvtest.message_round_trip(alice, carol)
    pvtest.message_round_trip(carol, alice)
    check(log_has(a, 'c.example->a.example: authenticated (SASL EXTERNAL)'),
          'Prosody did not authenticate to palaverd with SASL EXTERNAL')
    check(log_has(a, 'a.example->c.example: authenticated (SASL EXTERNAL)'),
          'palaverd did not authenticate to Prosody with SASL EXTERNAL')
    alice.close()
    carol.close()
    p.stop()


@suite.test
def test_prosody_dialback():
    if not shutil.which('prosody'):
        raise pvtest.Skip('prosody not installed')
    dns_stub()
    _, b = pair()
    # Prosody's certificate names another domain: b.example refuses it
    # (s2s_secure_auth), f.example allows dialback for c.example
    p = ProsodyPeer(suite, C, ADDR[C], CA_DIR, DNS_ADDR, {'carol': PW},
                    cert_name='wrong.example', secure_auth=False)
    p.start()
    bob = b.login('bob', PW, resource='pro')
    bob.send("<message type='chat' id='pd1' to='carol@c.example'>"
             "<body>x</body></message>")
    e = bob.recv_until(lambda e: e.get('id') == 'pd1', what='bounce')
    check_eq(pvtest.stanza_error(e)[1], 'remote-server-not-found',
             'b.example without c.example in s2s_insecure_domains')
    bob.close()
    f = PalaverPeer(suite, F, ADDR[F], CA_DIR, {C: ADDR[C]}, {'fred': PW},
                    s2s_insecure_domains=[C])
    f.start()
    fred = f.login('fred', PW, resource='pro')
    carol = p.login('carol', PW, resource='pro')
    fred.send('<presence/>')
    carol.send('<presence/>')
    pvtest.message_round_trip(fred, carol)
    pvtest.message_round_trip(carol, fred)
    # f.example's own certificate is valid, so Prosody accepts SASL
    # EXTERNAL from it even though Prosody's certificate is not
    check(log_has(f, 'f.example->c.example: authenticated (SASL EXTERNAL)'),
          'f.example did not authenticate to Prosody')
    check(log_has(f, 'c.example->f.example: authenticated (dialback)'),
          'Prosody was not authenticated by dialback')
    fred.close()
    carol.close()
    p.stop()


def main():
    rc = 1
    try:
        rc = suite.run()
    finally:
        for d in _dns:
            d.stop()
        shutil.rmtree(CA_DIR, ignore_errors=True)
    sys.exit(rc)


if __name__ == '__main__':
    main()
