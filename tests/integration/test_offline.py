#!/usr/bin/python3
# mod_offline (XEP-0160, RFC 6121 §8.5.2): messages to an account without an
# available non-negative resource are stored with a XEP-0203 delay, delivered
# once and in order on the next available presence, removed from the store
# (checked with mdb_stat), survive SIGKILL once committed, respect
# offline_max_messages, and keep encrypted payloads byte for byte. A
# backlog far larger than c2s_send_queue_max reaches a slow reader
# completely, in order and once (paced delivery), with messages sent during
# the delivery after it.

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
         'gina': 'g1na-pw', 'hank': 'h4nk-pw', 'ivan': '1van-pw'}
# the paced delivery case: BACKLOG messages of about 1 KiB, 20 times
# c2s_send_queue_max (and more than the kernel's socket buffers hold)
BACKLOG = 5000
PACED = {'offline_max_messages': 'off', 'c2s_send_queue_max': '256K',
         # alice stores the backlog quickly
         'c2s_stanza_rate': 'off', 'c2s_rate_limit': 'off'}

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


def body_index(m):
    body = m.findtext('{%s}body' % NS_CLIENT) or ''
    return body.split(':', 1)[0]


@suite.test
def big_backlog_paced_to_slow_reader():
    """XEP-0160 delivery of a backlog 20 times c2s_send_queue_max to a
    client that does not read for 2 s after its initial presence: sent
    all at once it would overflow the output queue and end the stream after
    the rows were deleted (lost). Everything must arrive in order and once,
    a second resource gets none of it, messages sent meanwhile (bare and
    to the receiving full JID) come after the stored ones, and the store
    ends empty."""
    srv = server('paced', **PACED)
    a = srv.login('alice', resource='bulk')
    hank = srv.jid('hank')
    pad = 'x' * 1000
    for first in range(0, BACKLOG, 250):
        a.send(''.join("<message type='chat' to='%s' id='p%d'><body>"
                       "%04d:%s</body></message>" % (hank, i, i, pad)
                       for i in range(first, min(first + 250, BACKLOG))))
    wait_queued(srv, 'hank', BACKLOG, timeout=30)

    h = srv.login('hank', resource='slow')
    h.send('<presence/>')
    t0 = time.monotonic()
    time.sleep(0.3)
    # the delivery is still running: it keeps its resource (XEP-0160 §2)
    h2 = srv.login('hank', resource='second')
    h2.send('<presence/>')
    left = queued(srv, 'hank')
    check(0 < left < BACKLOG, 'backlog not paced: %d of %d rows stored '
          'while the client does not read' % (left, BACKLOG))
    send_chat(a, hank, 'live-bare')
    send_chat(a, h.jid, 'live-full')
    nothing(h2, lambda e: is_msg(e) and
            e.find('{%s}delay' % NS_DELAY) is not None, 1.0,
            'stored message on the second resource')
    time.sleep(max(0, 2.0 - (time.monotonic() - t0)))

    got = []
    deadline = time.monotonic() + 40 * pvtest.time_factor()
    while len(got) < BACKLOG + 2:
        left = deadline - time.monotonic()
        check(left > 0, 'only %d of %d messages within the time limit' %
              (len(got), BACKLOG + 2))
        try:
            el = h.recv(left)
        except pvtest.StreamClosed:
            errs = [pvtest.tostr(e) for e in h.received
                    if e.tag == '{%s}error' % pvtest.NS_STREAMS]
            pvtest.fail('stream closed after %d of %d messages: %s' %
                        (len(got), BACKLOG + 2, errs or 'no stream error'))
        check(el.tag != '{%s}error' % pvtest.NS_STREAMS,
              'stream error: %s' % pvtest.tostr(el))
        if is_msg(el):
            got.append(body_index(el))
    want = ['%04d' % i for i in range(BACKLOG)] + ['live-bare', 'live-full']
    if got != want:
        bad = next(i for i, (x, y) in enumerate(zip(got, want)) if x != y)
        pvtest.fail('delivery order differs at %d: got %s, want %s' %
                    (bad, got[bad:bad + 3], want[bad:bad + 3]))
    nothing(h, is_msg, 1.0, 'duplicate message')
    wait_queued(srv, 'hank', 0)
    # the stream is alive
    pvtest.message_round_trip(a, h, 'still-here')
    a.close()
    h.close()
    h2.close()


@suite.test
def paced_delivery_stops_when_session_goes():
    """The receiving client disconnects while the delivery is paced: what
    was not handed over stays stored (with the whole backlog sent at once
    nothing would be left), and the next session gets exactly that rest,
    in order."""
    srv = server('paced', **PACED)
    # 8 MB: more than the kernel's socket buffers on loopback take from a
    # client that does not read (about 4 MB here)
    n = 2000
    a = srv.login('alice', resource='bulk2')
    ivan = srv.jid('ivan')
    pad = 'y' * 4000
    for first in range(0, n, 250):
        a.send(''.join("<message type='chat' to='%s' id='q%d'><body>"
                       "%04d:%s</body></message>" % (ivan, i, i, pad)
                       for i in range(first, min(first + 250, n))))
    wait_queued(srv, 'ivan', n, timeout=30)
    i1 = srv.login('ivan', resource='leaving')
    i1.send('<presence/>')
    time.sleep(0.5)
    i1.close()
    # the rest stays: wait until the deletions in flight have committed
    deadline = time.monotonic() + 10 * pvtest.time_factor()
    last, rest = -1, queued(srv, 'ivan')
    while rest != last and time.monotonic() < deadline:
        time.sleep(0.5)
        last, rest = rest, queued(srv, 'ivan')
    check_eq(rest, last, 'stored rows settled')
    check(0 < rest < n, 'rows left after the client went: %d of %d' %
          (rest, n))
    i2 = srv.login('ivan', resource='back')
    i2.send('<presence/>')
    got = []
    while len(got) < rest:
        got.append(body_index(i2.recv_until(
            is_msg, what='stored message %d of %d' % (len(got) + 1, rest))))
    check_eq(got, ['%04d' % i for i in range(n - rest, n)],
             'the rest of the backlog')
    nothing(i2, is_msg, 1.0, 'duplicate message')
    wait_queued(srv, 'ivan', 0)
    a.close()
    i2.close()


@suite.test
def big_backlog_with_stream_management():
    """The same backlog to a client with XEP-0198 on: the delivery waits
    while half of smacks_max_unacked is unacknowledged (the client acks on
    the server's <r/>), so the limit never ends the session and nothing is
    re-routed out of order."""
    if pvtest.available_modules(['smacks']) != ['smacks']:
        pvtest.skip('mod_smacks not built')
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import test_smacks as ts
    srv = suite.shared_server('paced-sm', users=all_users(),
                              modules=MODULES + ['smacks'], **PACED)
    a = srv.login('alice', resource='bulk-sm')
    hank = srv.jid('hank')
    pad = 'y' * 1000
    for first in range(0, BACKLOG, 250):
        a.send(''.join("<message type='chat' to='%s' id='q%d'><body>"
                       "%04d:%s</body></message>" % (hank, i, i, pad)
                       for i in range(first, min(first + 250, BACKLOG))))
    wait_queued(srv, 'hank', BACKLOG, timeout=30)
    h = ts.sm_login(srv, 'hank', 'sm-slow')
    h.c.send('<presence/>')
    time.sleep(2)
    got = [b.split(':')[0] for b in h.messages(BACKLOG, timeout=60 *
                                               pvtest.time_factor())]
    check_eq(got, ['%04d' % i for i in range(BACKLOG)], 'order and count')
    h.nothing(1.0)
    check_eq(queued(srv, 'hank'), 0, 'rows left in the store')
    a.close()


if __name__ == '__main__':
    suite.main()
