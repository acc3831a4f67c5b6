#!/usr/bin/python3
# mod_offline (XEP-0160, RFC 6121 §8.5.2): messages to an account without an
# available non-negative resource are stored with a XEP-0203 delay, delivered
# once and in order on the next available presence, removed from the store
# (checked with mdb_stat), survive SIGKILL once committed, respect
# offline_max_messages, and keep encrypted payloads byte for byte.

import glob
import os
import re
import sys
import time
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, NS_CLIENT  # noqa: E402

NS_DELAY = 'urn:xmpp:delay'
MODULES = pvtest.CORE_MODULES + ['offline']
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw', 'carol': 'car0l-pw',
         'dave': 'd4ve-pw', 'erin': '3rin-pw', 'frank': 'fr4nk-pw',
         'gina': 'g1na-pw'}

suite = pvtest.Suite('offline')


def scenario_files():
    return sorted(glob.glob(os.path.join(pvtest.scenarios_dir(),
                                         'xep0160_*.scn')))


def all_users():
    users = dict(USERS)
    for f in scenario_files():
        for _name, jid, pw in pvtest.scenario_clients(f):
            users[jid.split('@')[0]] = pw
    return users


def server(key='default', **kw):
    if pvtest.available_modules(['offline']) != ['offline']:
        pvtest.skip('mod_offline not built')
    return suite.shared_server(key, users=all_users(), modules=MODULES,
                               **kw)


def is_msg(el, body=None):
    return el.tag == '{%s}message' % NS_CLIENT and (
        body is None or el.findtext('{%s}body' % NS_CLIENT) == body)


def queued(srv, user):
    """Rows of user in the offline.queue store (committed data), read with
    mdb_dump in hex: keys start with the length-prefixed host and user
    (CONTRACTS.md §4)."""
    return sum(1 for k in pvtest.store_keys(srv, 'offline.queue')
               if k[:2] == (srv.domain, user))


def wait_queued(srv, user, n, timeout=5):
    deadline = time.monotonic() + timeout * pvtest.time_factor()
    got = queued(srv, user)
    while got != n and time.monotonic() < deadline:
        time.sleep(0.05)
        got = queued(srv, user)
    check_eq(got, n, 'committed offline rows of %s' % user)


def nothing(c, pred, timeout=1.0, what='stanza'):
    """No element matching pred arrives within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            el = c.recv(left)
        except TimeoutError:
            return
        if pred(el):
            pvtest.fail('unexpected %s: %s' % (what, pvtest.tostr(el)))


def send_chat(c, to, body, mtype='chat', extra=''):
    t = " type='%s'" % mtype if mtype is not None else ''
    c.send("<message%s to='%s' id='%s'><body>%s</body>%s</message>" %
           (t, to, body, body, extra))


def stamp_of(el):
    d = el.find('{%s}delay' % NS_DELAY)
    check(d is not None, 'no XEP-0203 delay on %s' % pvtest.tostr(el))
    check(re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$',
                   d.get('stamp') or '') is not None,
          'bad delay stamp %r' % d.get('stamp'))
    return d


@suite.test
def disco_advertises_msgoffline():
    srv = server()
    c = srv.login('alice', resource='disco')
    r = c.iq("<iq type='get' id='d1' to='%s'><query xmlns='http://jabber.org"
             "/protocol/disco#info'/></iq>" % srv.domain)
    feats = [f.get('var') for f in r.iter(
        '{http://jabber.org/protocol/disco#info}feature')]
    check('msgoffline' in feats, 'msgoffline not in disco: %s' % feats)
    c.close()


@suite.test
def stored_in_order_with_delay():
    srv = server()
    a = srv.login('alice', resource='pc')
    bob = srv.jid('bob')
    send_chat(a, bob, 'first', 'chat')
    send_chat(a, bob, 'second', 'normal')
    send_chat(a, bob, 'third', None)
    # a full JID of a resource that is not online counts as the bare JID
    send_chat(a, bob + '/gone', 'fourth', 'chat')
    send_chat(a, bob, 'news', 'headline')
    send_chat(a, bob, 'room', 'groupchat')
    # stored messages are accepted silently (groupchat is the router's
    # business: RFC 6121 §8.5.2.2.1 wants an error for it)
    nothing(a, lambda e: is_msg(e) and e.get('type') == 'error' and
            e.get('id') not in ('room',), what='error for a stored message')
    wait_queued(srv, 'bob', 4)

    b = srv.login('bob', resource='phone')
    nothing(b, is_msg, 0.5, 'message before initial presence')
    b.send('<presence/>')
    got = []
    while len(got) < 4:
        got.append(b.recv_until(is_msg, what='offline message %d' %
                                (len(got) + 1)))
    check_eq([m.findtext('{%s}body' % NS_CLIENT) for m in got],
             ['first', 'second', 'third', 'fourth'], 'delivery order')
    stamps = []
    for m in got:
        d = stamp_of(m)
        check_eq(d.get('from'), srv.domain, 'delay from')
        stamps.append(d.get('stamp'))
        check_eq(m.get('from'), a.jid, 'from of the stored message')
    check_eq(stamps, sorted(stamps), 'delay stamps in order')
    check_eq(got[0].get('type'), 'chat', 'type kept')
    nothing(b, is_msg, 1.0, 'headline, groupchat or duplicate message')
    wait_queued(srv, 'bob', 0)
    a.close()
    b.close()


@suite.test
def delivered_exactly_once():
    srv = server()
    a = srv.login('alice', resource='once')
    send_chat(a, srv.jid('carol'), 'only-once')
    wait_queued(srv, 'carol', 1)
    c1 = srv.login('carol', resource='one')
    c1.send('<presence/>')
    c1.recv_until(lambda e: is_msg(e, 'only-once'), what='offline message')
    # more presence from the same resource is no new transition
    c1.send('<presence><show>away</show></presence>')
    nothing(c1, lambda e: is_msg(e, 'only-once'), 1.0, 'redelivery on '
            'a presence update')
    c1.close()
    wait_queued(srv, 'carol', 0)
    c2 = srv.login('carol', resource='two')
    c2.send('<presence/>')
    nothing(c2, lambda e: is_msg(e, 'only-once'), 1.0, 'redelivery after '
            'reconnect')
    c2.close()
    a.close()


@suite.test
def transition_to_available_delivers():
    """Unavailable, or available with a negative priority, stores; the
    move to a non-negative available presence delivers."""
    srv = server()
    a = srv.login('alice', resource='tr')
    d = srv.login('dave', resource='neg')
    d.send('<presence><priority>-1</priority></presence>')
    time.sleep(0.2)
    send_chat(a, srv.jid('dave'), 'while-negative')
    wait_queued(srv, 'dave', 1)
    nothing(d, lambda e: is_msg(e, 'while-negative'), 0.5,
            'message to a negative-priority resource')
    d.send('<presence><priority>1</priority></presence>')
    m = d.recv_until(lambda e: is_msg(e, 'while-negative'),
                     what='delivery on priority >= 0')
    stamp_of(m)
    d.send("<presence type='unavailable'/>")
    time.sleep(0.2)
    send_chat(a, srv.jid('dave'), 'while-unavailable')
    wait_queued(srv, 'dave', 1)
    d.send('<presence/>')
    d.recv_until(lambda e: is_msg(e, 'while-unavailable'),
                 what='delivery on available again')
    nothing(d, lambda e: is_msg(e, 'while-negative'), 0.5, 'redelivery')
    # online now: live delivery, nothing stored
    send_chat(a, srv.jid('dave'), 'live')
    m = d.recv_until(lambda e: is_msg(e, 'live'), what='live message')
    check(m.find('{%s}delay' % NS_DELAY) is None, 'live message has delay')
    wait_queued(srv, 'dave', 0)
    a.close()
    d.close()


@suite.test
def unknown_account_not_stored():
    srv = server()
    a = srv.login('alice', resource='unk')
    send_chat(a, 'nobody@' + srv.domain, 'void')
    e = a.recv_until(lambda e: is_msg(e) and e.get('type') == 'error',
                     what='error for an unknown account')
    check_eq(pvtest.stanza_error(e), ('cancel', 'service-unavailable'),
             'error for an unknown account')
    check_eq(queued(srv, 'nobody'), 0, 'rows for an unknown account')
    a.close()


@suite.test
def encrypted_payload_untouched():
    srv = server()
    a = srv.login('alice', resource='omemo')
    payload = (
        "<encrypted xmlns='eu.siacs.conversations.axolotl'>"
        "<header sid='27183'><key rid='31415' prekey='true'>"
        "MwohBfRqBm2atj3fT0/KUDg59Cnvfpgoe/PLNIu1xgSXujEZEAAYACIwKh6TTC7VBQ"
        "ZcCcKnQlO+6s1GQ9DIRKH4JU7XrJ+JJnIv+b+ig&#10;</key>"
        "<key rid='12345'>AAAA&amp;&lt;&gt;'\"</key>"
        "<iv>1234567890abcdef</iv></header>"
        "<payload>  c3BhY2VzIGFuZCAKbmV3bGluZQ==\n  </payload></encrypted>"
        "<encryption xmlns='urn:xmpp:eme:0' namespace='eu.siacs."
        "conversations.axolotl'/><store xmlns='urn:xmpp:hints'/>")
    a.send("<message type='chat' to='%s' id='enc1' xml:lang='de'>%s"
           "<body>fallback text</body></message>" %
           (srv.jid('erin'), payload))
    wait_queued(srv, 'erin', 1)
    e = srv.login('erin', resource='dev')
    e.send('<presence/>')
    m = e.recv_until(lambda x: is_msg(x, 'fallback text'),
                     what='stored encrypted message')
    sent = ET.fromstring("<message xmlns='jabber:client'>%s</message>" %
                         payload)
    for tag in ('{eu.siacs.conversations.axolotl}encrypted',
                '{urn:xmpp:eme:0}encryption', '{urn:xmpp:hints}store'):
        want, got = sent.find(tag), m.find(tag)
        check(got is not None, '%s lost in storage' % tag)
        want.tail = got.tail = None
        check_eq(pvtest.tostr(got), pvtest.tostr(want), 'stored %s' % tag)
    check_eq(m.get('{http://www.w3.org/XML/1998/namespace}lang'), 'de',
             'xml:lang')
    a.close()
    e.close()


@suite.test
def scenarios():
    files = scenario_files()
    if not files:
        pvtest.skip('no xep0160_*.scn')
    srv = server()
    for f in files:
        rc, out = pvtest.run_scenario(srv, f)
        if rc != 0:
            pvtest.fail('%s: scn_runner exit %d\n%s' %
                        (os.path.basename(f), rc, pvtest.indent(out)))


@suite.test
def limit_refuses_past_max():
    srv = server('limited', offline_max_messages=3)
    a = srv.login('alice', resource='lim')
    for i in range(3):
        send_chat(a, srv.jid('frank'), 'm%d' % i)
    send_chat(a, srv.jid('frank'), 'too-many')
    e = a.recv_until(lambda x: is_msg(x) and x.get('type') == 'error',
                     what='refusal past offline_max_messages')
    check_eq(e.get('id'), 'too-many', 'refused message')
    check_eq(pvtest.stanza_error(e), ('cancel', 'service-unavailable'),
             'refusal condition (XEP-0160 §2)')
    text = e.findtext('{%s}error/{%s}text' % (NS_CLIENT,
                                              pvtest.NS_STANZA_ERR))
    check(text and 'full' in text, 'refusal without a text: %r' % text)
    wait_queued(srv, 'frank', 3)
    f = srv.login('frank', resource='x')
    f.send('<presence/>')
    bodies = [f.recv_until(is_msg, what='stored message').findtext(
        '{%s}body' % NS_CLIENT) for _ in range(3)]
    check_eq(bodies, ['m0', 'm1', 'm2'], 'stored messages')
    nothing(f, lambda x: is_msg(x, 'too-many'), 0.5, 'refused message')
    f.close()
    # the queue drained: storing works again
    wait_queued(srv, 'frank', 0)
    send_chat(a, srv.jid('frank'), 'after-drain')
    nothing(a, lambda x: is_msg(x) and x.get('type') == 'error', 0.5,
            'refusal after the queue drained')
    wait_queued(srv, 'frank', 1)
    a.close()


@suite.test
def sigkill_after_commit_delivers_once():
    srv = suite.server(name='offline-kill', users=USERS, modules=MODULES)
    if pvtest.available_modules(['offline']) != ['offline']:
        pvtest.skip('mod_offline not built')
    srv.start()
    a = srv.login('alice', resource='k')
    send_chat(a, srv.jid('gina'), 'before-kill')
    # the row is committed (the durability point of the store) ...
    wait_queued(srv, 'gina', 1)
    # ... so a SIGKILL right now must not lose it
    srv.kill()
    a.close()
    srv.start()
    g = srv.login('gina', resource='after')
    g.send('<presence/>')
    m = g.recv_until(lambda e: is_msg(e, 'before-kill'),
                     what='message sent before SIGKILL')
    stamp_of(m)
    nothing(g, lambda e: is_msg(e, 'before-kill'), 1.0, 'duplicate')
    g.close()
    wait_queued(srv, 'gina', 0)
    g2 = srv.login('gina', resource='again')
    g2.send('<presence/>')
    nothing(g2, lambda e: is_msg(e, 'before-kill'), 1.0,
            'redelivery after a second login')
    g2.close()


if __name__ == '__main__':
    suite.main()
