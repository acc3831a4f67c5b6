#!/usr/bin/python3
# mod_csi (XEP-0352, urn:xmpp:csi:0): <csi/> offered only after
# authentication; while a client is inactive, a contact's presence changes
# (coalesced to the latest per sender full JID), chat states and receipts
# are held (nothing arrives); a message with a body, an IQ or a received
# carbon with a body goes out at once, preceded by everything held, in
# order; <active/> delivers everything held exactly once; csi_queue_max
# flushes when exceeded; a dropped or closed connection with held stanzas
# is cleaned up (the ASan build checks for leaks).
#
# "Nothing arrives" is checked after a barrier on the sender (its ping
# answer proves the server routed everything it sent before), then a
# short wait on the inactive client.

import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, NS_CLIENT  # noqa: E402

NS_CSI = 'urn:xmpp:csi:0'
NS_CARBONS = 'urn:xmpp:carbons:2'
NS_CHATSTATES = 'http://jabber.org/protocol/chatstates'
NS_RECEIPTS = 'urn:xmpp:receipts'
MSG = '{%s}message' % NS_CLIENT
PRES = '{%s}presence' % NS_CLIENT
IQ = '{%s}iq' % NS_CLIENT
BODY = '{%s}body' % NS_CLIENT
MODULES = pvtest.CORE_MODULES + ['roster', 'presence', 'offline', 'carbons',
                                 'csi']
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw', 'carol': 'car0l-pw'}
QUEUE_MAX = 6

suite = pvtest.Suite('csi')
_seq = [0]


def server():
    if pvtest.available_modules(['csi']) != ['csi']:
        pvtest.skip('mod_csi not built')
    return suite.shared_server(users=USERS, modules=MODULES,
                               csi_queue_max=QUEUE_MAX)


def uid(prefix='m'):
    _seq[0] += 1
    return '%s%d-%d' % (prefix, _seq[0], os.getpid())


def quiet():
    return 0.6 * pvtest.time_factor()


def ping(c):
    """Round trip to the server: everything c sent before is routed."""
    pid = uid('ping')
    c.send("<iq type='get' id='%s'><ping xmlns='urn:xmpp:ping'/></iq>" %
           pid)
    c.recv_until(lambda e: e.tag == IQ and e.get('id') == pid,
                 what='ping answer')


def drain(c, t=0.2):
    """Drops whatever is queued or arrives within t seconds."""
    c.pending.clear()
    while True:
        try:
            c.recv(t)
        except TimeoutError:
            return
        c.pending.clear()


def nothing(c, what):
    try:
        el = c.recv(quiet())
    except TimeoutError:
        return
    pvtest.fail('%s: %s received %s while inactive' %
                (what, c.jid, pvtest.tostr(el)))


def collect(c, n, what):
    out = []
    for _ in range(n):
        try:
            out.append(c.recv())
        except TimeoutError:
            pvtest.fail('%s: only %d of %d stanzas: %s' %
                        (what, len(out), n,
                         [pvtest.tostr(e) for e in out]))
    return out


def describe(el):
    """A short comparable form of a stanza."""
    tag = el.tag.split('}')[1]
    if tag == 'presence':
        return ('presence', el.get('from'), el.get('type'),
                el.findtext('{%s}status' % NS_CLIENT))
    if tag == 'message':
        if el.findtext(BODY) is not None:
            return ('body', el.get('from'), el.findtext(BODY))
        kids = [k.tag for k in el]
        return ('message', el.get('from'), tuple(kids))
    return (tag, el.get('from'), el.get('id'))


def login(srv, user, resource):
    c = srv.login(user, resource=resource)
    return c


def inactive(c):
    c.send("<inactive xmlns='%s'/>" % NS_CSI)
    ping(c)     # processed in order: the state is set now


def pres(sender, to, status, type_=None):
    t = " type='%s'" % type_ if type_ else ''
    sender.send("<presence to='%s'%s><status>%s</status></presence>" %
                (to, t, status))


def chatstate(sender, to, state='composing'):
    sender.send("<message type='chat' to='%s'><%s xmlns='%s'/></message>" %
                (to, state, NS_CHATSTATES))


def receipt(sender, to, rid):
    sender.send("<message to='%s'><received xmlns='%s' id='%s'/>"
                "</message>" % (to, NS_RECEIPTS, rid))


@suite.test
def feature_after_auth_only():
    srv = server()
    c = srv.client()
    f = c.connect()
    check(f.find('{%s}csi' % NS_CSI) is None,
          '<csi/> offered before authentication')
    check(c.auth('carol', USERS['carol']) is None, 'auth failed')
    c.bind('f')
    check(c.features.find('{%s}csi' % NS_CSI) is not None,
          'no <csi/> after authentication: %s' % pvtest.tostr(c.features))
    c.close()


@suite.test
def held_then_flushed_by_body():
    srv = server()
    a1 = login(srv, 'alice', 'a1')
    a2 = login(srv, 'alice', 'a2')
    bob = login(srv, 'bob', 'phone')
    try:
        inactive(bob)
        # barriers between the senders: two connections have no order
        pres(a1, bob.jid, 'one')
        ping(a1)
        pres(a2, bob.jid, 'other')
        ping(a2)
        pres(a1, bob.jid, 'two')
        pres(a1, bob.jid, 'three')
        chatstate(a1, bob.jid)
        receipt(a1, bob.jid, 'r1')
        ping(a1)
        ping(a2)
        nothing(bob, 'presence, chat state and receipt')
        text = uid('body')
        a1.send("<message type='chat' to='%s'><body>%s</body></message>" %
                (bob.jid, text))
        got = [describe(e) for e in collect(bob, 5, 'flush by body')]
        # a1's latest presence replaces its older ones and takes their
        # place in time (after a2's)
        want = [('presence', a2.jid, None, 'other'),
                ('presence', a1.jid, None, 'three'),
                ('message', a1.jid, ('{%s}composing' % NS_CHATSTATES,)),
                ('message', a1.jid, ('{%s}received' % NS_RECEIPTS,)),
                ('body', a1.jid, text)]
        check_eq(got, want, 'stanzas after a message with a body')
        # still inactive: a new chat state waits again
        chatstate(a1, bob.jid, 'paused')
        ping(a1)
        nothing(bob, 'chat state after the flush')
        # <active/> delivers it, exactly once, before the ping answer
        bob.send("<active xmlns='%s'/>" % NS_CSI)
        pid = uid('ping')
        bob.send("<iq type='get' id='%s'><ping xmlns='urn:xmpp:ping'/>"
                 "</iq>" % pid)
        got = [describe(e) for e in collect(bob, 2, 'active')]
        got[1] = got[1][0::2]   # the answer's from does not matter
        check_eq(got, [('message', a1.jid,
                        ('{%s}paused' % NS_CHATSTATES,)),
                       ('iq', pid)],
                 'stanzas after <active/>')
        nothing(bob, 'after <active/>')
        # active again: presence goes straight through
        pres(a1, bob.jid, 'live')
        el = bob.recv()
        check_eq(describe(el), ('presence', a1.jid, None, 'live'),
                 'presence while active')
    finally:
        for c in (a1, a2, bob):
            c.close()


@suite.test
def active_flushes_coalesced():
    srv = server()
    a1 = login(srv, 'alice', 'x1')
    a2 = login(srv, 'alice', 'x2')
    bob = login(srv, 'bob', 'phone2')
    try:
        inactive(bob)
        pres(a1, bob.jid, 'p1')
        ping(a1)
        pres(a2, bob.jid, 'q1')
        chatstate(a2, bob.jid)
        ping(a2)
        pres(a1, bob.jid, 'p2')
        pres(a1, bob.jid, 'gone', 'unavailable')
        ping(a1)
        ping(a2)
        nothing(bob, 'presence updates')
        bob.send("<active xmlns='%s'/>" % NS_CSI)
        got = [describe(e) for e in collect(bob, 3, 'active')]
        # a1's three updates collapse into the latest, in its place
        check_eq(got, [('presence', a2.jid, None, 'q1'),
                       ('message', a2.jid,
                        ('{%s}composing' % NS_CHATSTATES,)),
                       ('presence', a1.jid, 'unavailable', 'gone')],
                 'held stanzas after <active/>')
        nothing(bob, 'after the flush (exactly once)')
    finally:
        for c in (a1, a2, bob):
            c.close()


@suite.test
def important_stanzas_go_at_once():
    srv = server()
    a1 = login(srv, 'alice', 'y1')
    bob = login(srv, 'bob', 'phone3')
    try:
        # an interested, available resource gets subscription requests
        bob.iq("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/>"
               "</iq>")
        bob.send('<presence/>')
        drain(bob)
        inactive(bob)
        pres(a1, bob.jid, 'held')
        # an IQ (request/response must flow)
        a1.send("<iq type='get' id='v1' to='%s'><query xmlns='jabber:iq:"
                "version'/></iq>" % bob.jid)
        got = [describe(e) for e in collect(bob, 2, 'iq')]
        check_eq(got, [('presence', a1.jid, None, 'held'),
                       ('iq', a1.jid, 'v1')], 'held presence, then iq')
        # a subscription request
        a1.send("<presence type='subscribe' to='%s'/>" % srv.jid('bob'))
        el = bob.recv()
        check_eq((el.tag, el.get('type')), (PRES, 'subscribe'),
                 'subscription request while inactive')
        # an OMEMO message without body
        a1.send("<message type='chat' to='%s'><encrypted xmlns='eu.siacs."
                "conversations.axolotl'><header sid='1'/></encrypted>"
                "</message>" % bob.jid)
        el = bob.recv()
        check(el.tag == MSG and len(el) == 1 and 'encrypted' in el[0].tag,
              'OMEMO message held: %s' % pvtest.tostr(el))
        # a MUC invitation (XEP-0045 mediated) and a call proposal
        a1.send("<message to='%s'><x xmlns='http://jabber.org/protocol/"
                "muc#user'><invite from='%s'/></x></message>" %
                (bob.jid, a1.jid))
        el = bob.recv()
        check(el.tag == MSG and 'muc#user' in el[0].tag,
              'invite held: %s' % pvtest.tostr(el))
        a1.send("<message type='chat' to='%s'><propose xmlns='urn:xmpp:"
                "jingle-message:0' id='call1'><description xmlns='urn:xmpp:"
                "jingle:apps:rtp:1' media='audio'/></propose></message>" %
                bob.jid)
        el = bob.recv()
        check(el.tag == MSG and 'jingle-message' in el[0].tag,
              'call proposal held: %s' % pvtest.tostr(el))
        nothing(bob, 'after the important ones')
    finally:
        for c in (a1, bob):
            c.close()


@suite.test
def carbon_with_body_is_important():
    srv = server()
    a1 = login(srv, 'alice', 'z1')
    desk = login(srv, 'carol', 'desk')
    phone = login(srv, 'carol', 'phone')
    try:
        for c in (desk, phone):
            r = c.iq("<iq type='set' id='cb'><enable xmlns='%s'/></iq>" %
                     NS_CARBONS)
            check_eq(r.get('type'), 'result', 'carbons enable')
        inactive(phone)
        # a chat state to the desktop: its carbon waits on the phone
        chatstate(a1, desk.jid)
        desk.recv_until(lambda e: e.tag == MSG, what='chat state on desk')
        ping(a1)
        nothing(phone, 'carbon of a chat state')
        text = uid('cbody')
        a1.send("<message type='chat' to='%s'><body>%s</body></message>" %
                (desk.jid, text))
        got = collect(phone, 2, 'carbons')
        inner = [e.find('{%s}received/{urn:xmpp:forward:0}forwarded/%s' %
                        (NS_CARBONS, MSG)) for e in got]
        check(all(i is not None for i in inner),
              'not two received carbons: %s' %
              [pvtest.tostr(e) for e in got])
        check(inner[0].find('{%s}composing' % NS_CHATSTATES) is not None and
              inner[1].findtext(BODY) == text,
              'carbons out of order: %s' % [pvtest.tostr(e) for e in got])
    finally:
        for c in (a1, desk, phone):
            c.close()


@suite.test
def queue_max_flushes():
    srv = server()
    a1 = login(srv, 'alice', 'q1')
    bob = login(srv, 'bob', 'phone4')
    try:
        inactive(bob)
        for i in range(QUEUE_MAX):
            receipt(a1, bob.jid, 'q%d' % i)
        ping(a1)
        nothing(bob, 'up to csi_queue_max')
        receipt(a1, bob.jid, 'q%d' % QUEUE_MAX)
        got = collect(bob, QUEUE_MAX + 1, 'over csi_queue_max')
        ids = [e.find('{%s}received' % NS_RECEIPTS).get('id') for e in got]
        check_eq(ids, ['q%d' % i for i in range(QUEUE_MAX + 1)],
                 'receipts flushed in order')
        nothing(bob, 'after the cap flush')
    finally:
        for c in (a1, bob):
            c.close()


@suite.test
def held_at_disconnect_and_close():
    srv = server()
    a1 = login(srv, 'alice', 'd1')
    try:
        # a dropped connection and a clean close, each with held stanzas
        for clean in (False, True):
            bob = login(srv, 'bob', 'gone%d' % clean)
            inactive(bob)
            pres(a1, bob.jid, 'x')
            chatstate(a1, bob.jid)
            ping(a1)
            if clean:
                bob.send('</stream:stream>')
                bob.wait_closed(5)
            bob.close()
        time.sleep(0.3)
        # the server is fine and the full JIDs are gone: an error back
        a1.send("<iq type='get' id='gone' to='%s/gone0'><ping xmlns='urn:"
                "xmpp:ping'/></iq>" % srv.jid('bob'))
        el = a1.recv_until(lambda e: e.tag == IQ and e.get('id') == 'gone',
                           what='answer for a gone resource')
        check_eq(el.get('type'), 'error', 'iq to a gone resource')
    finally:
        a1.close()


if __name__ == '__main__':
    suite.main()
