#!/usr/bin/python3
# mod_blocking (XEP-0191): blocklist get/block/unblock with pushes to the
# resources that asked for the list; a blocked contact's messages and IQs
# are refused with service-unavailable and its presence is dropped; the
# user's own stanzas to it get not-acceptable + <blocked/>; JID matching
# (full, bare, domain); the list survives a restart; blocking_max_items;
# and the xep0191_*.scn scenarios on a server with the module.

import glob
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, NS_CLIENT  # noqa: E402

NS_BLOCKING = 'urn:xmpp:blocking'
NS_BLOCKED = 'urn:xmpp:blocking:errors'
MODULES = pvtest.CORE_MODULES + ['blocking']
USERS = {'juliet': 'jul1et-pw', 'romeo': 'r0meo-pw', 'tybalt': 'tyb4lt-pw',
         'capulet': 'c4pulet-pw', 'montague': 'm0ntague-pw',
         'benvolio': 'b3nvolio-pw', 'paris': 'p4ris-pw',
         'friar': 'fr1ar-pw', 'nurse': 'nur5e-pw', 'peter': 'p3ter-pw'}

suite = pvtest.Suite('blocking')


def scenario_files():
    return sorted(glob.glob(os.path.join(pvtest.scenarios_dir(),
                                         'xep0191_*.scn')))


def all_users():
    users = dict(USERS)
    for f in scenario_files():
        for _name, jid, pw in pvtest.scenario_clients(f):
            users[jid.split('@')[0]] = pw
    return users


def server(key='default', **kw):
    if pvtest.available_modules(['blocking']) != ['blocking']:
        pvtest.skip('mod_blocking not built')
    kw.setdefault('modules', MODULES)
    return suite.shared_server(key, users=all_users(), **kw)


def is_msg(el, body=None):
    return el.tag == '{%s}message' % NS_CLIENT and (
        body is None or el.findtext('{%s}body' % NS_CLIENT) == body)


def is_push(el, name):
    return (el.tag == '{%s}iq' % NS_CLIENT and el.get('type') == 'set' and
            el.find('{%s}%s' % (NS_BLOCKING, name)) is not None)


def nothing(c, pred, timeout=1.0, what='stanza'):
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


def items_of(el, name):
    node = el.find('{%s}%s' % (NS_BLOCKING, name))
    check(node is not None, 'no <%s/> in %s' % (name, pvtest.tostr(el)))
    return sorted(i.get('jid') for i in node.findall(
        '{%s}item' % NS_BLOCKING))


_seq = [0]


def iq_id():
    _seq[0] += 1
    return 'b%d' % _seq[0]


def get_list(c):
    r = c.iq("<iq type='get' id='%s'><blocklist xmlns='%s'/></iq>" %
             (iq_id(), NS_BLOCKING))
    check_eq(r.get('type'), 'result', 'blocklist get: %s' % pvtest.tostr(r))
    return items_of(r, 'blocklist')


def change(c, name, jids, expect='result'):
    items = ''.join("<item jid='%s'/>" % j for j in jids)
    r = c.iq("<iq type='set' id='%s'><%s xmlns='%s'>%s</%s></iq>" %
             (iq_id(), name, NS_BLOCKING, items, name))
    if expect == 'result':
        check_eq(r.get('type'), 'result', '%s %s: %s' %
                 (name, jids, pvtest.tostr(r)))
    return r


def block(c, *jids):
    return change(c, 'block', jids)


def unblock(c, *jids):
    return change(c, 'unblock', jids)


def err_of(el):
    return pvtest.stanza_error(el)


def is_blocked_error(el):
    err = el.find('{%s}error' % NS_CLIENT)
    return (err is not None and err.get('type') == 'cancel' and
            err.find('{%s}not-acceptable' % pvtest.NS_STANZA_ERR) is not None
            and err.find('{%s}blocked' % NS_BLOCKED) is not None)


def online(srv, user, resource):
    c = srv.login(user, resource=resource)
    c.send('<presence/>')
    # our own presence comes back from the bare JID broadcast
    c.recv_until(lambda e: e.tag == '{%s}presence' % NS_CLIENT,
                 what='own presence')
    return c


@suite.test
def disco_advertises_blocking():
    srv = server()
    c = srv.login('juliet', resource='disco')
    r = c.iq("<iq type='get' id='d1' to='%s'><query xmlns='http://jabber.org"
             "/protocol/disco#info'/></iq>" % srv.domain)
    feats = [f.get('var') for f in r.iter(
        '{http://jabber.org/protocol/disco#info}feature')]
    check(NS_BLOCKING in feats, '%s not in disco: %s' % (NS_BLOCKING, feats))
    c.close()


@suite.test
def blocklist_crud_and_pushes():
    srv = server()
    romeo, tybalt = srv.jid('romeo'), srv.jid('tybalt')
    j1 = srv.login('juliet', resource='one')
    j2 = srv.login('juliet', resource='two')
    j3 = srv.login('juliet', resource='three')   # never asks for the list
    check_eq(get_list(j1), [], 'initial blocklist')
    check_eq(get_list(j2), [], 'initial blocklist (second resource)')

    r = change(j1, 'block', [], expect='error')
    check_eq(err_of(r), ('modify', 'bad-request'), 'block without items')
    r = change(j1, 'block', ['@@bad'], expect='error')
    check_eq(err_of(r)[1], 'jid-malformed', 'block of a malformed JID')
    check_eq(get_list(j1), [], 'blocklist after refused blocks')

    block(j1, romeo, tybalt)
    for c in (j1, j2):
        p = c.recv_until(lambda e: is_push(e, 'block'), what='block push')
        check_eq(items_of(p, 'block'), sorted([romeo, tybalt]),
                 'block push items')
        check(p.get('to') == c.jid, 'push to %s' % p.get('to'))
    nothing(j3, lambda e: is_push(e, 'block'), 0.5,
            'push to a resource that never asked for the list')
    check_eq(get_list(j2), sorted([romeo, tybalt]), 'blocklist after block')
    # prepared form: a mixed-case JID is stored as its canonical form
    block(j1, 'Mercutio@%s' % srv.domain.upper())
    check_eq(get_list(j1), sorted([romeo, tybalt,
                                   'mercutio@' + srv.domain]),
             'blocklist holds prepared JIDs')

    unblock(j1, tybalt)
    for c in (j1, j2):
        p = c.recv_until(lambda e: is_push(e, 'unblock') and
                         items_of(e, 'unblock') == [tybalt],
                         what='unblock push')
    check_eq(get_list(j2), sorted([romeo, 'mercutio@' + srv.domain]),
             'blocklist after unblock')

    unblock(j1)     # everything
    for c in (j1, j2):
        p = c.recv_until(lambda e: is_push(e, 'unblock') and
                         items_of(e, 'unblock') == [],
                         what='unblock-all push')
    check_eq(get_list(j1), [], 'blocklist after unblock all')
    for c in (j1, j2, j3):
        c.close()


@suite.test
def blocked_contact_refused():
    srv = server()
    cap = online(srv, 'capulet', 'house')
    mon = online(srv, 'montague', 'house')
    get_list(cap)
    block(cap, srv.jid('montague'))

    # messages from the blocked contact: service-unavailable, never arrive
    for to, mid in ((srv.jid('capulet'), 'to-bare'), (cap.jid, 'to-full')):
        mon.send("<message type='chat' to='%s' id='%s'><body>%s</body>"
                 "</message>" % (to, mid, mid))
        e = mon.recv_until(lambda x: is_msg(x) and x.get('id') == mid,
                           what='error for %s' % mid)
        check_eq(e.get('type'), 'error', 'answer to a blocked message')
        check_eq(err_of(e), ('cancel', 'service-unavailable'),
                 'error for a message from a blocked contact')
    nothing(cap, is_msg, 0.5, 'message from a blocked contact')

    # IQ get: service-unavailable; IQ result: dropped silently
    r = mon.iq("<iq type='get' id='v1' to='%s'><query xmlns='jabber:iq:"
               "version'/></iq>" % cap.jid)
    check_eq(err_of(r), ('cancel', 'service-unavailable'),
             'error for an IQ from a blocked contact')
    mon.send("<iq type='result' id='stray' to='%s'/>" % cap.jid)
    # presence (directed, subscription request): dropped, no error
    mon.send("<presence to='%s'/>" % srv.jid('capulet'))
    mon.send("<presence type='subscribe' to='%s'/>" % srv.jid('capulet'))
    nothing(cap, lambda e: e.get('from', '').startswith('montague@'), 1.0,
            'stanza from a blocked contact')
    nothing(mon, lambda e: e.get('type') == 'error', 0.3,
            'error for presence to a blocker')

    # the blocker's own stanzas to the contact: not-acceptable + blocked
    cap.send("<message type='chat' to='%s' id='out1'><body>hi</body>"
             "</message>" % srv.jid('montague'))
    e = cap.recv_until(lambda x: is_msg(x) and x.get('id') == 'out1',
                       what='refusal of a message to a blocked contact')
    check(is_blocked_error(e), 'not not-acceptable+blocked: %s' %
          pvtest.tostr(e))
    check_eq(e.findtext('{%s}body' % NS_CLIENT), 'hi', 'body echoed')
    r = cap.iq("<iq type='get' id='out2' to='%s'><ping xmlns='urn:xmpp:"
               "ping'/></iq>" % mon.jid)
    check(is_blocked_error(r), 'IQ to a blocked contact: %s' %
          pvtest.tostr(r))
    cap.send("<presence to='%s' id='out3'/>" % mon.jid)
    p = cap.recv_until(lambda x: x.get('id') == 'out3',
                       what='refusal of presence to a blocked contact')
    check(is_blocked_error(p), 'presence to a blocked contact: %s' %
          pvtest.tostr(p))
    nothing(mon, lambda e: e.get('from', '').startswith('capulet@'), 0.5,
            'stanza from the blocker')

    # the server itself stays reachable whatever the list says
    r = cap.iq("<iq type='get' id='srv1' to='%s'><ping xmlns='urn:xmpp:"
               "ping'/></iq>" % srv.domain)
    check_eq(r.get('type'), 'result', 'ping to the own server')

    # unblock restores delivery both ways
    unblock(cap, srv.jid('montague'))
    mon.send("<message type='chat' to='%s' id='back'><body>back</body>"
             "</message>" % srv.jid('capulet'))
    cap.recv_until(lambda x: is_msg(x, 'back'), what='message after unblock')
    mon.send("<presence to='%s'><status>here</status></presence>" % cap.jid)
    cap.recv_until(lambda x: x.tag == '{%s}presence' % NS_CLIENT and
                   x.findtext('{%s}status' % NS_CLIENT) == 'here',
                   what='presence after unblock')
    pvtest.message_round_trip(cap, mon)
    cap.close()
    mon.close()


@suite.test
def jid_matching_rules():
    srv = server()
    fr = online(srv, 'friar', 'cell')
    evil = online(srv, 'benvolio', 'evil')
    good = online(srv, 'benvolio', 'good')
    par = online(srv, 'paris', 'home')

    # a full JID blocks only that resource
    block(fr, evil.jid)
    evil.send("<message to='%s' id='e1'><body>e1</body></message>" % fr.jid)
    e = evil.recv_until(lambda x: x.get('id') == 'e1', what='error e1')
    check_eq(err_of(e), ('cancel', 'service-unavailable'), 'blocked resource')
    good.send("<message to='%s' id='g1'><body>g1</body></message>" % fr.jid)
    fr.recv_until(lambda x: is_msg(x, 'g1'), what='message from another '
                  'resource of a full-JID-blocked contact')
    nothing(fr, lambda x: is_msg(x, 'e1'), 0.3, 'message of blocked resource')
    unblock(fr)

    # a bare JID blocks every resource
    block(fr, srv.jid('benvolio'))
    for c in (evil, good):
        c.send("<message to='%s' id='b-%s'><body>x</body></message>" %
               (fr.jid, c.jid))
        e = c.recv_until(lambda x: x.get('id') == 'b-%s' % c.jid,
                         what='error for a bare-blocked contact')
        check_eq(err_of(e)[1], 'service-unavailable', 'bare block')
    par.send("<message to='%s' id='p1'><body>p1</body></message>" % fr.jid)
    fr.recv_until(lambda x: is_msg(x, 'p1'), what='message from a bystander')
    unblock(fr)

    # a domain blocks everybody on it; the own server and account still
    # work, so the block can be undone
    block(fr, srv.domain)
    par.send("<message to='%s' id='p2'><body>p2</body></message>" % fr.jid)
    e = par.recv_until(lambda x: x.get('id') == 'p2', what='error p2')
    check_eq(err_of(e)[1], 'service-unavailable', 'domain block')
    check_eq(get_list(fr), [srv.domain], 'list with a domain')
    unblock(fr, srv.domain)
    par.send("<message to='%s' id='p3'><body>p3</body></message>" % fr.jid)
    fr.recv_until(lambda x: is_msg(x, 'p3'), what='message after domain '
                  'unblock')
    nothing(fr, lambda x: is_msg(x, 'p2'), 0.3, 'refused message p2')
    for c in (fr, evil, good, par):
        c.close()


def is_pres(el, frm=None, ptype=None):
    return (el.tag == '{%s}presence' % NS_CLIENT and
            (frm is None or el.get('from', '').startswith(frm)) and
            el.get('type') == ptype)


@suite.test
def presence_effects_with_roster():
    """XEP-0191 §3.3/§3.4 with mod_roster and mod_presence: a subscribed
    contact sees the user go unavailable on block, gets none of the user's
    broadcasts while blocked, and gets the current presence on unblock."""
    mods = ['blocking', 'roster', 'presence']
    if pvtest.available_modules(mods) != mods:
        pvtest.skip('needs mod_roster and mod_presence')
    srv = server('presence', modules=pvtest.CORE_MODULES + mods)
    nurse = online(srv, 'nurse', 'n')
    peter = online(srv, 'peter', 'p')
    nb, pb = srv.jid('nurse'), srv.jid('peter')
    # peter subscribes to nurse's presence and she approves
    peter.send("<presence type='subscribe' to='%s'/>" % nb)
    nurse.recv_until(lambda e: is_pres(e, pb, 'subscribe'),
                     what='subscription request')
    nurse.send("<presence type='subscribed' to='%s'/>" % pb)
    peter.recv_until(lambda e: is_pres(e, nurse.jid),
                     what="nurse's presence after approval")

    get_list(nurse)
    block(nurse, pb)
    peter.recv_until(lambda e: is_pres(e, nurse.jid, 'unavailable'),
                     what='unavailable presence on block')
    # her broadcasts no longer reach him; his presence no longer reaches
    # her
    nurse.send('<presence><show>away</show></presence>')
    peter.send('<presence><show>chat</show></presence>')
    nothing(peter, lambda e: is_pres(e, nb), 1.0,
            'presence of the blocker to a blocked contact')
    nothing(nurse, lambda e: e.tag == '{%s}presence' % NS_CLIENT and
            e.get('from', '').startswith(pb), 0.5,
            'presence of a blocked contact')

    unblock(nurse, pb)
    p = peter.recv_until(lambda e: is_pres(e, nurse.jid),
                         what='current presence on unblock')
    check_eq(p.findtext('{%s}show' % NS_CLIENT), 'away',
             'the current presence')
    nurse.send('<presence><show>dnd</show></presence>')
    peter.recv_until(lambda e: is_pres(e, nurse.jid) and
                     e.findtext('{%s}show' % NS_CLIENT) == 'dnd',
                     what='broadcast after unblock')
    nurse.close()
    peter.close()


@suite.test
def scenarios():
    files = scenario_files()
    if not files:
        pvtest.skip('no xep0191_*.scn')
    srv = server()
    for f in files:
        rc, out = pvtest.run_scenario(srv, f)
        if rc != 0:
            pvtest.fail('%s: scn_runner exit %d\n%s' %
                        (os.path.basename(f), rc, pvtest.indent(out)))


@suite.test
def survives_restart_and_limit():
    if pvtest.available_modules(['blocking']) != ['blocking']:
        pvtest.skip('mod_blocking not built')
    srv = suite.server(name='blocking-restart', users=USERS,
                       modules=MODULES, blocking_max_items=2)
    srv.start()
    j = srv.login('juliet', resource='r')
    block(j, srv.jid('romeo'), srv.jid('tybalt'))
    r = change(j, 'block', [srv.jid('paris')], expect='error')
    check_eq(err_of(r), ('cancel', 'policy-violation'),
             'block past blocking_max_items')
    # re-blocking what is there is no growth
    block(j, srv.jid('romeo'))
    j.close()
    srv.kill()          # no clean shutdown: the commits must be enough
    srv.start()
    j = online(srv, 'juliet', 'after')
    check_eq(get_list(j), sorted([srv.jid('romeo'), srv.jid('tybalt')]),
             'blocklist after restart')
    ro = online(srv, 'romeo', 'r')
    ro.send("<message type='chat' to='%s' id='ar'><body>x</body></message>"
            % srv.jid('juliet'))
    e = ro.recv_until(lambda x: x.get('id') == 'ar', what='error after '
                      'restart')
    check_eq(err_of(e), ('cancel', 'service-unavailable'),
             'blocked after restart')
    nothing(j, is_msg, 0.5, 'message from a blocked contact after restart')
    j.close()
    ro.close()


if __name__ == '__main__':
    suite.main()
