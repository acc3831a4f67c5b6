#!/usr/bin/python3
# mod_carbons (XEP-0280 v2, urn:xmpp:carbons:2, with XEP-0334 <no-copy/>):
# the disco feature; enable/disable (also refused for another account);
# received carbons for messages to a full JID and to the bare JID (only
# the resources that did not get the original, wrapped from the bare JID
# to the resource, same type, the original inside <forwarded/>); sent
# carbons to the sender's other enabled resources, never to the sender;
# sessions without carbons get nothing; <private/> and <no-copy/> honoured
# and <private/> stripped from the delivered original; no carbon of a
# carbon, of a headline or of a body-less normal message.
#
# "Nothing arrived" is proven with a barrier: a headline (never copied)
# sent to the same session afterwards must be the next message it sees.

import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, NS_CLIENT  # noqa: E402

NS_CARBONS = 'urn:xmpp:carbons:2'
NS_FORWARD = 'urn:xmpp:forward:0'
NS_HINTS = 'urn:xmpp:hints'
MSG = '{%s}message' % NS_CLIENT
BODY = '{%s}body' % NS_CLIENT
MODULES = pvtest.CORE_MODULES + ['roster', 'presence', 'offline', 'carbons',
                                 'csi']
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw', 'carol': 'car0l-pw',
         'dave': 'd4ve-pw'}

suite = pvtest.Suite('carbons')
_seq = [0]


def server():
    if pvtest.available_modules(['carbons']) != ['carbons']:
        pvtest.skip('mod_carbons not built')
    return suite.shared_server(users=USERS, modules=MODULES)


def uid(prefix='m'):
    _seq[0] += 1
    return '%s%d-%d' % (prefix, _seq[0], os.getpid())


def expect(c, pred, timeout=None, what='element'):
    """First queued or arriving element matching pred; others stay
    queued."""
    timeout = c.timeout if timeout is None else timeout
    deadline = time.monotonic() + timeout
    i = 0
    while True:
        while i < len(c.pending):
            if pred(c.pending[i]):
                return c.pending.pop(i)
            i += 1
        left = deadline - time.monotonic()
        if left <= 0 or c.eof or c.closed:
            pvtest.fail('no %s within %.1fs; queued: %s' %
                        (what, timeout,
                         [pvtest.tostr(e) for e in c.pending] or 'nothing'))
        try:
            c._recv_some(left)
        except pvtest.StreamClosed:
            pass


def iq(c, xml):
    """Sends an IQ, returns the answer; other elements stay queued."""
    iq_id = pvtest.ET.fromstring(xml).get('id')
    c.send(xml)
    return expect(c, lambda e: e.tag == '{%s}iq' % NS_CLIENT and
                  e.get('id') == iq_id and
                  e.get('type') in ('result', 'error'),
                  what='answer to iq %s' % iq_id)


def carbons(c, on=True):
    r = iq(c, "<iq type='set' id='%s'><%s xmlns='%s'/></iq>" %
           (uid('cb'), 'enable' if on else 'disable', NS_CARBONS))
    check_eq(r.get('type'), 'result', 'carbons %s answer' %
             ('enable' if on else 'disable'))


def online(srv, user, resource, prio=0, enable=True):
    c = srv.login(user, resource=resource)
    if enable:
        carbons(c)
    c.send('<presence><priority>%d</priority></presence>' % prio)
    # own presence back: the session is available once this arrives
    expect(c, lambda e: e.tag == '{%s}presence' % NS_CLIENT and
           e.get('from') == c.jid, what='own presence')
    return c


def body_is(text):
    return lambda e: e.tag == MSG and e.findtext(BODY) == text


def wrapped(el, kind):
    """The message inside <kind><forwarded/></kind>, or None."""
    w = el.find('{%s}%s' % (NS_CARBONS, kind))
    if w is None:
        return None
    return w.find('{%s}forwarded/%s' % (NS_FORWARD, MSG))


def carbon_of(kind, text):
    def pred(e):
        inner = wrapped(e, kind) if e.tag == MSG else None
        return inner is not None and inner.findtext(BODY) == text
    return pred


def nothing_before_barrier(sender, c, what):
    """sender sends c a headline (never copied); it must be the first
    message c sees: no carbon (or anything else) came before it."""
    token = uid('barrier')
    sender.send("<message type='headline' to='%s'><body>%s</body>"
                "</message>" % (c.jid, token))
    el = expect(c, lambda e: e.tag == MSG, what='barrier on %s' % c.jid)
    check(el.findtext(BODY) == token,
          '%s: %s got %s before the barrier' % (what, c.jid,
                                                pvtest.tostr(el)))


def check_carbon(el, kind, bare, to, type_, inner_from, inner_to, text):
    check_eq(el.get('from'), bare, '%s carbon from' % kind)
    check_eq(el.get('to'), to, '%s carbon to' % kind)
    check_eq(el.get('type'), type_, '%s carbon type' % kind)
    inner = wrapped(el, kind)
    check(inner is not None, 'no <%s><forwarded><message/> in %s' %
          (kind, pvtest.tostr(el)))
    check_eq(inner.get('from'), inner_from, 'forwarded message from')
    check_eq(inner.get('to'), inner_to, 'forwarded message to')
    check_eq(inner.findtext(BODY), text, 'forwarded body')


class Bobs:
    """bob on three resources: b1 (prio 5) and b2 (prio 0) with carbons,
    b3 (prio 0) without; alice on one."""

    def __init__(self, srv):
        self.alice = online(srv, 'alice', 'a1')
        self.b1 = online(srv, 'bob', 'b1', prio=5)
        self.b2 = online(srv, 'bob', 'b2', prio=0)
        self.b3 = online(srv, 'bob', 'b3', prio=0, enable=False)
        self.bare = srv.jid('bob')

    def all(self):
        return (self.alice, self.b1, self.b2, self.b3)

    def close(self):
        for c in self.all():
            c.close()


@suite.test
def disco_feature():
    srv = server()
    c = srv.login('carol', resource='d')
    r = iq(c, "<iq type='get' id='d1' to='%s'><query xmlns='http://jabber."
              "org/protocol/disco#info'/></iq>" % srv.domain)
    feats = [f.get('var') for f in r.iter(
        '{http://jabber.org/protocol/disco#info}feature')]
    check(NS_CARBONS in feats, 'urn:xmpp:carbons:2 not in %s' % feats)
    c.close()


@suite.test
def enable_rules():
    srv = server()
    c = srv.login('carol', resource='e')
    # twice is not an error (XEP-0280 §9.1), nor disabling twice
    carbons(c)
    carbons(c)
    carbons(c, False)
    carbons(c, False)
    # for another account: not-allowed
    r = iq(c, "<iq type='set' id='x1' to='%s'><enable xmlns='%s'/></iq>" %
           (srv.jid('dave'), NS_CARBONS))
    check_eq(pvtest.stanza_error(r), ('cancel', 'not-allowed'),
             'enable for another account')
    c.close()


@suite.test
def received_full_jid():
    srv = server()
    b = Bobs(srv)
    try:
        text = uid('full')
        b.alice.send("<message type='chat' to='%s' id='%s'><body>%s</body>"
                     "</message>" % (b.b2.jid, text, text))
        # b2 was addressed: the original, and no carbon of it
        el = expect(b.b2, lambda e: e.tag == MSG, what='original on b2')
        check(el.findtext(BODY) == text and wrapped(el, 'received') is None,
              'b2 should get the original first, got %s' % pvtest.tostr(el))
        el = expect(b.b1, lambda e: e.tag == MSG, what='carbon on b1')
        check_carbon(el, 'received', b.bare, b.b1.jid, 'chat', b.alice.jid,
                     b.b2.jid, text)
        nothing_before_barrier(b.alice, b.b2, 'addressed resource')
        nothing_before_barrier(b.alice, b.b3, 'carbons disabled')
        nothing_before_barrier(b.alice, b.b1, 'second copy')
    finally:
        b.close()


@suite.test
def received_bare_jid():
    srv = server()
    b = Bobs(srv)
    try:
        text = uid('bare')
        b.alice.send("<message type='chat' to='%s' id='%s'><body>%s</body>"
                     "</message>" % (b.bare, text, text))
        # b1 has the highest priority: the router gives it the original
        el = expect(b.b1, lambda e: e.tag == MSG, what='original on b1')
        check(el.findtext(BODY) == text and wrapped(el, 'received') is None,
              'b1 should get the original, got %s' % pvtest.tostr(el))
        el = expect(b.b2, lambda e: e.tag == MSG, what='carbon on b2')
        check_carbon(el, 'received', b.bare, b.b2.jid, 'chat', b.alice.jid,
                     b.bare, text)
        nothing_before_barrier(b.alice, b.b1, 'bare recipient')
        nothing_before_barrier(b.alice, b.b3, 'carbons disabled')
        # a normal message with a body is eligible too (XEP-0280 §6)
        text = uid('normal')
        b.alice.send("<message to='%s'><body>%s</body></message>" %
                     (b.bare, text))
        expect(b.b1, body_is(text), what='normal message on b1')
        el = expect(b.b2, lambda e: e.tag == MSG, what='normal carbon')
        check(wrapped(el, 'received') is not None and
              wrapped(el, 'received').findtext(BODY) == text,
              'normal message not copied: %s' % pvtest.tostr(el))
        check(el.get('type') in (None, 'normal'), 'carbon type %s' %
              el.get('type'))
    finally:
        b.close()


@suite.test
def sent_carbons():
    srv = server()
    b = Bobs(srv)
    try:
        text = uid('sent')
        b.b3.send("<message type='chat' to='%s' id='%s'><body>%s</body>"
                  "</message>" % (b.alice.jid, text, text))
        expect(b.alice, body_is(text), what='message from b3 on alice')
        # irrespective of whether the sender has carbons (§8)
        for c in (b.b1, b.b2):
            el = expect(c, lambda e: e.tag == MSG, what='sent carbon')
            check_carbon(el, 'sent', b.bare, c.jid, 'chat', b.b3.jid,
                         b.alice.jid, text)
        # from an enabled resource: never a copy to itself
        text = uid('sent')
        b.b1.send("<message type='chat' to='%s' id='%s'><body>%s</body>"
                  "</message>" % (b.alice.jid, text, text))
        expect(b.alice, body_is(text), what='message from b1 on alice')
        el = expect(b.b2, lambda e: e.tag == MSG, what='sent carbon on b2')
        check_carbon(el, 'sent', b.bare, b.b2.jid, 'chat', b.b1.jid,
                     b.alice.jid, text)
        nothing_before_barrier(b.alice, b.b1, 'sender itself')
        nothing_before_barrier(b.alice, b.b3, 'carbons disabled')
        # the contact (without carbons) sees no carbon of its own either
        nothing_before_barrier(b.b3, b.alice, 'contact')
    finally:
        b.close()


@suite.test
def private_and_no_copy():
    srv = server()
    b = Bobs(srv)
    try:
        for hint in ("<private xmlns='%s'/>" % NS_CARBONS,
                     "<no-copy xmlns='%s'/>" % NS_HINTS):
            text = uid('priv')
            b.alice.send("<message type='chat' to='%s'><body>%s</body>%s"
                         "</message>" % (b.b2.jid, text, hint))
            el = expect(b.b2, body_is(text), what='private original')
            if 'private' in hint:
                # §7: the receiving server SHOULD remove <private/>
                check(el.find('{%s}private' % NS_CARBONS) is None,
                      '<private/> not stripped: %s' % pvtest.tostr(el))
            nothing_before_barrier(b.alice, b.b1, 'received ' + hint)
            text = uid('priv')
            b.b2.send("<message type='chat' to='%s'><body>%s</body>%s"
                      "</message>" % (b.alice.jid, text, hint))
            el = expect(b.alice, body_is(text), what='private sent')
            nothing_before_barrier(b.alice, b.b1, 'sent ' + hint)
    finally:
        b.close()


@suite.test
def not_eligible():
    srv = server()
    b = Bobs(srv)
    try:
        # a forged carbon is delivered as is but never copied again
        text = uid('forged')
        b.alice.send("<message type='chat' to='%s'><received xmlns='%s'>"
                     "<forwarded xmlns='%s'><message xmlns='jabber:client' "
                     "type='chat'><body>%s</body></message></forwarded>"
                     "</received></message>" %
                     (b.b2.jid, NS_CARBONS, NS_FORWARD, text))
        expect(b.b2, lambda e: e.tag == MSG, what='forged carbon')
        nothing_before_barrier(b.alice, b.b1, 'carbon of a carbon')
        # a normal message without body or IM payload
        b.alice.send("<message to='%s'><x xmlns='urn:example:x'/>"
                     "</message>" % b.b2.jid)
        expect(b.b2, lambda e: e.tag == MSG, what='body-less normal')
        nothing_before_barrier(b.alice, b.b1, 'body-less normal')
        # groupchat to a full JID
        b.alice.send("<message type='groupchat' to='%s'><body>g</body>"
                     "</message>" % b.b2.jid)
        expect(b.b2, lambda e: e.tag == MSG, what='groupchat')
        nothing_before_barrier(b.alice, b.b1, 'groupchat')
    finally:
        b.close()


@suite.test
def disable_stops_copies():
    srv = server()
    b = Bobs(srv)
    try:
        carbons(b.b1, False)
        text = uid('dis')
        b.alice.send("<message type='chat' to='%s'><body>%s</body>"
                     "</message>" % (b.b2.jid, text))
        expect(b.b2, body_is(text), what='original on b2')
        nothing_before_barrier(b.alice, b.b1, 'after disable')
        # and back on
        carbons(b.b1, True)
        text = uid('dis')
        b.alice.send("<message type='chat' to='%s'><body>%s</body>"
                     "</message>" % (b.b2.jid, text))
        expect(b.b2, body_is(text), what='original on b2')
        expect(b.b1, carbon_of('received', text), what='carbon re-enabled')
    finally:
        b.close()


@suite.test
def unavailable_full_jid_and_offline():
    srv = server()
    b = Bobs(srv)
    try:
        # to a resource that does not exist: treated as the bare JID, so
        # b1 (highest priority) gets it and b2 the carbon
        text = uid('gone')
        b.alice.send("<message type='chat' to='%s/nowhere'><body>%s</body>"
                     "</message>" % (b.bare, text))
        expect(b.b1, body_is(text), what='original on b1')
        expect(b.b2, carbon_of('received', text), what='carbon on b2')
        nothing_before_barrier(b.alice, b.b1, 'bare fallback recipient')
    finally:
        b.close()


@suite.test
def call_invitation_rings_every_resource():
    """XEP-0353: a <propose/> to the bare JID reaches every non-negative
    resource as the original (b2 and b3 despite b1's higher priority), so
    carbons must not add a copy; a chat message keeps the priority rule."""
    srv = server()
    b = Bobs(srv)
    try:
        sid = uid('call')
        b.alice.send("<message type='chat' to='%s' id='%s'>"
                     "<propose xmlns='urn:xmpp:jingle-message:0' id='%s'>"
                     "<description xmlns='urn:xmpp:jingle:apps:rtp:1' "
                     "media='audio'/></propose>"
                     "<store xmlns='urn:xmpp:hints'/></message>"
                     % (b.bare, sid, sid))
        for c in (b.b1, b.b2, b.b3):
            el = expect(c, lambda e: e.tag == MSG, what='propose on %s'
                        % c.jid)
            check(el.find('{urn:xmpp:jingle-message:0}propose') is not None
                  and wrapped(el, 'received') is None,
                  '%s should ring with the original, got %s'
                  % (c.jid, pvtest.tostr(el)))
        for c in (b.b1, b.b2, b.b3):
            nothing_before_barrier(b.alice, c, 'propose delivered once')
        # and the retraction rings off everywhere too
        b.alice.send("<message type='chat' to='%s'>"
                     "<retract xmlns='urn:xmpp:jingle-message:0' id='%s'/>"
                     "</message>" % (b.bare, sid))
        for c in (b.b1, b.b2, b.b3):
            el = expect(c, lambda e: e.tag == MSG, what='retract on %s'
                        % c.jid)
            check(el.find('{urn:xmpp:jingle-message:0}retract') is not None,
                  '%s: no retract: %s' % (c.jid, pvtest.tostr(el)))
    finally:
        b.close()


if __name__ == '__main__':
    suite.main()
