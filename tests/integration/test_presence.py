#!/usr/bin/python3
# mod_presence (RFC 6121 §3, §4): the subscription handshake between two
# users with its roster pushes, presence only after approval (a user who
# has not approved never sees presence, neither broadcast nor probe
# answers), a request stored while the contact is offline and delivered
# at its next login (also across a restart), state surviving a restart,
# probes answered, unavailable on disconnect, directed presence cleanup,
# pre-approval, removal cancelling both ways, and account deletion
# updating the contact's roster (checked in the store). The libstrophe
# scenarios tests/scenarios/rfc6121_presence_*.scn run here too.

import glob
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, NS_CLIENT  # noqa: E402

NS_ROSTER = 'jabber:iq:roster'
Q = '{%s}query' % NS_ROSTER
ITEM = '{%s}item' % NS_ROSTER
PRES = '{%s}presence' % NS_CLIENT
MODULES = pvtest.CORE_MODULES + ['roster', 'presence']

suite = pvtest.Suite('presence')

NAMES = ('alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'hank',
         'ivy', 'jack', 'kate', 'lara', 'mike', 'nina', 'omar', 'pia',
         'quin', 'rob', 'sara', 'tom', 'uma', 'vic')
USERS = {u: u + '-pw' for u in NAMES}


def scenario_files():
    return sorted(glob.glob(os.path.join(pvtest.scenarios_dir(),
                                         'rfc6121_presence_*.scn')))


def server():
    if pvtest.available_modules(['roster', 'presence']) != ['roster',
                                                             'presence']:
        pvtest.skip('mod_roster/mod_presence not built')
    users = dict(USERS)
    for f in scenario_files():
        for _name, jid, pw in pvtest.scenario_clients(f):
            users[jid.split('/')[0].split('@')[0]] = pw
    return suite.shared_server(users=users, modules=MODULES)


def bare(srv, user):
    return '%s@%s' % (user, srv.domain)


def iq(c, xml):
    """c.iq() that keeps what arrives before the answer queued."""
    iq_id = pvtest.ET.fromstring(xml).get('id')
    c.send(xml)
    kept = []
    while True:
        try:
            el = c.recv()
        except TimeoutError:
            pvtest.fail('no answer to iq %s; got %s' %
                        (iq_id, [pvtest.tostr(e) for e in kept]))
        if el.tag == '{%s}iq' % NS_CLIENT and el.get('id') == iq_id and \
                el.get('type') in ('result', 'error'):
            c.pending[0:0] = kept
            return el
        kept.append(el)


def expect(c, pred, timeout=None, what='element'):
    """The first queued or arriving element matching pred; the others stay
    queued (unlike RawClient.recv_until, which drops them)."""
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


def items(el):
    q = el.find(Q)
    return {} if q is None else {i.get('jid'): i for i in q.findall(ITEM)}


def roster(c):
    r = iq(c, "<iq type='get' id='g'><query xmlns='%s'/></iq>" % NS_ROSTER)
    check_eq(r.get('type'), 'result', 'roster get')
    return items(r)


def online(srv, user, resource='r', presence=True, status=None):
    """Logs in, asks for the roster (interested resource), sends initial
    presence."""
    c = srv.login(user, resource=resource)
    roster(c)
    if presence:
        if status:
            c.send('<presence><status>%s</status></presence>' % status)
        else:
            c.send('<presence/>')
        # our own presence comes back (RFC 6121 §4.2.2)
        own_presence(c)
    return c


def own_presence(c):
    expect(c, lambda e: e.tag == PRES and e.get('from') == c.jid and
           e.get('type') is None, what='own presence')


def push(c, jid, pred=lambda it: True, what='roster push'):
    el = expect(c, lambda e: e.tag == '{%s}iq' % NS_CLIENT and
                e.get('type') == 'set' and jid in items(e) and
                pred(items(e)[jid]), what=what)
    return items(el)[jid]


def presence_from(c, frm, type_=None, what=None, timeout=None):
    """Next presence whose from is frm (a full JID, or a bare JID that
    also matches any resource of it) with that type."""
    def pred(e):
        f = e.get('from') or ''
        return (e.tag == PRES and (f == frm or f.split('/')[0] == frm) and
                e.get('type') == type_)
    return expect(c, pred, timeout=timeout,
                  what=what or 'presence type=%s from %s' % (type_, frm))


def nothing_from(c, frm, timeout=1.0, what='stanza'):
    """Fails if any presence from frm (bare) arrives within timeout.
    Queued ones were read before the caller's last action: dropped."""
    c.pending[:] = [e for e in c.pending if not (
        e.tag == PRES and (e.get('from') or '').split('/')[0] == frm)]
    try:
        el = expect(c, lambda e: e.tag == PRES and
                    (e.get('from') or '').split('/')[0] == frm,
                    timeout=timeout)
    except pvtest.TestFailure:
        return
    pvtest.fail('unexpected %s: %s' % (what, pvtest.tostr(el)))


def sub_of(it):
    return (it.get('subscription'), it.get('ask'), it.get('approved'))


def subscribe_both(srv, a, b, ua, ub):
    """Full mutual handshake between online clients a (ua) and b (ub)."""
    a.send("<presence to='%s' type='subscribe'/>" % bare(srv, ub))
    presence_from(b, bare(srv, ua), 'subscribe')
    b.send("<presence to='%s' type='subscribed'/>" % bare(srv, ua))
    presence_from(a, bare(srv, ub), 'subscribed')
    b.send("<presence to='%s' type='subscribe'/>" % bare(srv, ua))
    presence_from(a, bare(srv, ub), 'subscribe')
    a.send("<presence to='%s' type='subscribed'/>" % bare(srv, ub))
    presence_from(b, bare(srv, ua), 'subscribed')
    push(a, bare(srv, ub), lambda it: it.get('subscription') == 'both')
    push(b, bare(srv, ua), lambda it: it.get('subscription') == 'both')


@suite.test
def handshake():
    srv = server()
    A, B = bare(srv, 'alice'), bare(srv, 'bob')
    alice = online(srv, 'alice', 'home')
    bob = online(srv, 'bob', 'work')
    # RFC 6121 §3.1.2: the request goes out stamped with the bare JID and
    # the user's roster shows it pending
    alice.send("<presence to='%s' type='subscribe' id='s1'/>" % B)
    it = push(alice, B)
    check_eq(sub_of(it), ('none', 'subscribe', None), 'pending-out item')
    req = presence_from(bob, A, 'subscribe')
    check_eq(req.get('from'), A, 'subscription request from the bare JID')
    # not approved yet: no presence either way (RFC 6121 §4.2.2)
    alice.send('<presence><status>secret</status></presence>')
    own_presence(alice)
    nothing_from(bob, A, what='presence before approval')
    # §3.1.5: approval
    bob.send("<presence to='%s' type='subscribed'/>" % A)
    it = push(bob, A)
    check_eq(sub_of(it), ('from', None, None), "bob's item after approval")
    ans = presence_from(alice, B, 'subscribed')
    check_eq(ans.get('from'), B, 'approval from the bare JID')
    it = push(alice, B)
    check_eq(sub_of(it), ('to', None, None), "alice's item after approval")
    p = presence_from(alice, bob.jid, None, 'bob presence after approval')
    check_eq(p.get('to'), A, 'presence to the subscriber')
    # alice still may not see... the reverse: bob does not get alice's
    alice.send('<presence><status>still secret</status></presence>')
    own_presence(alice)
    nothing_from(bob, A, what="alice's presence without bob subscribed")
    # and the other way round
    bob.send("<presence to='%s' type='subscribe'/>" % A)
    presence_from(alice, B, 'subscribe')
    push(bob, A, lambda it: it.get('ask') == 'subscribe')
    alice.send("<presence to='%s' type='subscribed'/>" % B)
    it = push(alice, B, lambda it: it.get('subscription') == 'both')
    presence_from(bob, A, 'subscribed')
    it = push(bob, A, lambda it: it.get('subscription') == 'both')
    presence_from(bob, alice.jid, None, 'alice presence after approval')
    # now a change reaches the contact
    bob.send('<presence><show>away</show><status>lunch</status></presence>')
    p = presence_from(alice, bob.jid)
    check_eq(p.findtext('{%s}status' % NS_CLIENT), 'lunch', 'status')
    # disconnect without unavailable: the server says it (§4.5.2)
    bob.close()
    presence_from(alice, bob.jid, 'unavailable', 'unavailable on close')
    # §4.2: bob back: alice learns it, bob's probe is answered
    bob = online(srv, 'bob', 'work2')
    presence_from(alice, bob.jid, None, 'presence of the new resource')
    presence_from(bob, alice.jid, None, 'probe answer from alice')
    # an explicit unavailable is broadcast too
    alice.send("<presence type='unavailable'/>")
    presence_from(bob, alice.jid, 'unavailable', 'explicit unavailable')
    alice.close()
    bob.close()


@suite.test
def never_approved_sees_nothing():
    srv = server()
    C, D = bare(srv, 'carol'), bare(srv, 'dave')
    carol = online(srv, 'carol')
    dave = online(srv, 'dave')
    carol.send("<presence to='%s' type='subscribe'/>" % D)
    presence_from(dave, C, 'subscribe')
    # dave neither answers nor... carol's presence never reaches dave,
    # dave's never reaches carol
    dave.send('<presence><status>d1</status></presence>')
    carol.send('<presence><status>c1</status></presence>')
    nothing_from(carol, D, what='presence of a contact who did not approve')
    nothing_from(dave, C, what='presence of someone not approved')
    # a fresh login of carol probes nobody who did not approve
    carol2 = online(srv, 'carol', 'second')
    nothing_from(carol2, D, 1.5, 'probe answered without approval')
    # a forged probe gets nothing either (RFC 6121 §4.3.2)
    carol2.send("<presence to='%s' type='probe'/>" % D)
    nothing_from(carol2, D, 1.0, 'client probe answered without approval')
    # dave refuses: carol's pending state is cleared
    dave.send("<presence to='%s' type='unsubscribed'/>" % C)
    presence_from(carol, D, 'unsubscribed')
    it = push(carol, D, lambda it: it.get('ask') is None)
    check_eq(sub_of(it), ('none', None, None), 'item after refusal')
    carol.send('<presence><status>c2</status></presence>')
    nothing_from(dave, C, what='presence after refusal')
    for c in (carol, carol2, dave):
        c.close()


@suite.test
def pending_request_delivered_later():
    srv = server()
    E, F, G = bare(srv, 'erin'), bare(srv, 'frank'), bare(srv, 'gina')
    erin = online(srv, 'erin')
    erin.send("<presence to='%s' type='subscribe'/>" % F)
    push(erin, F, lambda it: it.get('ask') == 'subscribe')
    erin.send("<presence to='%s' type='subscribe'/>" % G)
    push(erin, G, lambda it: it.get('ask') == 'subscribe')
    # frank logs in later: the request comes with his initial presence
    frank = srv.login('frank', resource='late')
    roster(frank)
    frank.send('<presence/>')
    req = presence_from(frank, E, 'subscribe', 'stored request')
    check_eq(req.get('from'), E, 'stored request from')
    # the stored request is not in frank's roster (RFC 6121 §3.1.3)
    check(E not in roster(frank), 'stored request listed as a roster item')
    frank.send("<presence to='%s' type='subscribed'/>" % E)
    presence_from(erin, F, 'subscribed')
    presence_from(erin, frank.jid, None, "frank's presence after approval")
    # answered: not delivered again
    frank.close()
    frank = online(srv, 'frank', 'again')
    nothing_from(frank, E, 1.0, 'answered request delivered again')
    frank.close()
    erin.close()
    # gina's request survives a restart
    srv.restart()
    gina = srv.login('gina', resource='after-restart')
    gina.send('<presence/>')
    presence_from(gina, E, 'subscribe', 'request stored across a restart')
    erin = online(srv, 'erin', 'back')
    it = roster(erin)[F]
    check_eq(sub_of(it), ('to', None, None), "erin's item for frank after "
             "restart")
    check_eq(sub_of(roster(erin)[G]), ('none', 'subscribe', None),
             'pending-out after restart')
    gina.send("<presence to='%s' type='subscribed'/>" % E)
    presence_from(erin, G, 'subscribed')
    gina.close()
    erin.close()


@suite.test
def state_survives_restart():
    srv = server()
    H, I = bare(srv, 'hank'), bare(srv, 'ivy')
    hank = online(srv, 'hank')
    ivy = online(srv, 'ivy')
    subscribe_both(srv, hank, ivy, 'hank', 'ivy')
    hank.close()
    ivy.close()
    srv.restart()
    ivy = online(srv, 'ivy', 'morning', status='up early')
    check_eq(sub_of(roster(ivy)[H]), ('both', None, None),
             'subscription after restart')
    hank = online(srv, 'hank', 'later')
    # hank's initial presence reaches ivy; hank's probe gets ivy's
    # last presence with its status (RFC 6121 §4.3.2)
    presence_from(ivy, hank.jid, None, "hank's broadcast")
    p = presence_from(hank, ivy.jid, None, 'probe answer')
    check_eq(p.findtext('{%s}status' % NS_CLIENT), 'up early',
             'probe answer carries the last presence')
    hank.close()
    presence_from(ivy, hank.jid, 'unavailable', 'unavailable on close')
    ivy.close()


@suite.test
def probe_of_offline_contact():
    srv = server()
    J, K = bare(srv, 'jack'), bare(srv, 'kate')
    jack = online(srv, 'jack')
    kate = online(srv, 'kate')
    subscribe_both(srv, jack, kate, 'jack', 'kate')
    kate.close()
    presence_from(jack, kate.jid, 'unavailable')
    jack.close()
    jack = online(srv, 'jack', 'fresh')
    # kate is offline: the probe gets unavailable from her bare JID
    p = presence_from(jack, K, 'unavailable', 'probe answer for offline')
    check_eq(p.get('from'), K, 'offline probe answer from the bare JID')
    jack.close()


@suite.test
def directed_presence_cleanup():
    srv = server()
    L, M = bare(srv, 'lara'), bare(srv, 'mike')
    lara = online(srv, 'lara')
    mike = online(srv, 'mike')
    # no subscription at all: directed presence still goes through
    lara.send("<presence to='%s'><status>psst</status></presence>" %
              mike.jid)
    p = presence_from(mike, lara.jid)
    check_eq(p.findtext('{%s}status' % NS_CLIENT), 'psst', 'directed')
    # the broadcast does not reach mike
    lara.send('<presence><status>broadcast</status></presence>')
    nothing_from(mike, L, what='broadcast to a directed-presence target')
    # logout: mike is told (RFC 6121 §4.6.3)
    lara.close()
    presence_from(mike, lara.jid, 'unavailable', 'directed unavailable')
    # a directed unavailable ends the tracking: nothing at logout
    lara = online(srv, 'lara', 'two')
    lara.send("<presence to='%s'/>" % mike.jid)
    presence_from(mike, lara.jid)
    lara.send("<presence to='%s' type='unavailable'/>" % mike.jid)
    presence_from(mike, lara.jid, 'unavailable')
    lara.close()
    nothing_from(mike, L, what='unavailable after a directed unavailable')
    mike.close()


@suite.test
def pre_approval():
    srv = server()
    N, O = bare(srv, 'nina'), bare(srv, 'omar')
    nina = online(srv, 'nina')
    omar = online(srv, 'omar')
    # RFC 6121 §3.4: nina approves before omar asks
    nina.send("<presence to='%s' type='subscribed'/>" % O)
    it = push(nina, O)
    check_eq(sub_of(it), ('none', None, 'true'), 'pre-approved item')
    nothing_from(omar, N, 0.7, 'routed pre-approval')
    omar.send("<presence to='%s' type='subscribe'/>" % N)
    presence_from(omar, N, 'subscribed', 'automatic approval')
    presence_from(omar, nina.jid, None, "nina's presence")
    it = push(nina, O, lambda it: it.get('subscription') == 'from')
    check_eq(sub_of(it), ('from', None, None), 'item after use')
    nothing_from(nina, O, 0.7, 'request delivered despite pre-approval')
    nina.close()
    omar.close()


@suite.test
def removal_cancels_both_ways():
    srv = server()
    P, Qj = bare(srv, 'pia'), bare(srv, 'quin')
    pia = online(srv, 'pia')
    quin = online(srv, 'quin')
    subscribe_both(srv, pia, quin, 'pia', 'quin')
    r = iq(pia, "<iq type='set' id='rm'><query xmlns='%s'><item jid='%s' "
           "subscription='remove'/></query></iq>" % (NS_ROSTER, Qj))
    check_eq(r.get('type'), 'result', 'remove')
    # RFC 6121 §2.5.2: quin gets unavailable, unsubscribe, unsubscribed
    presence_from(quin, pia.jid, 'unavailable')
    presence_from(quin, P, 'unsubscribe')
    presence_from(quin, P, 'unsubscribed')
    it = push(quin, P, lambda it: it.get('subscription') == 'none')
    check_eq(sub_of(it), ('none', None, None), "quin's item after removal")
    pia.send('<presence><status>gone</status></presence>')
    nothing_from(quin, P, what='presence after removal')
    pia.close()
    quin.close()


store_rows = pvtest.store_keys
@suite.test
def account_deletion_updates_contacts():
    srv = server()
    d = srv.domain
    R, S, T = bare(srv, 'rob'), bare(srv, 'sara'), bare(srv, 'tom')
    rob = online(srv, 'rob')
    sara = online(srv, 'sara')
    subscribe_both(srv, rob, sara, 'rob', 'sara')
    # tom only asked rob: a stored, unanswered request in rob's records
    tom = online(srv, 'tom')
    tom.send("<presence to='%s' type='subscribe'/>" % R)
    presence_from(rob, T, 'subscribe')
    rows = store_rows(srv, 'roster.items')
    check((d, 'rob', S) in rows and (d, 'sara', R) in rows,
          'rows before deletion: %s' % rows)
    srv.ctl('deluser', R)
    # sara sees rob go and loses his item (with a push)
    presence_from(sara, rob.jid, 'unavailable', 'unavailable of the '
                  'deleted account')
    it = push(sara, R, lambda it: it.get('subscription') == 'remove',
              'removal push for the deleted account')
    check(R not in roster(sara), "deleted account still in sara's roster")
    push(tom, R, lambda it: it.get('subscription') == 'remove',
         "removal push for tom's pending item")
    check(rob.wait_closed(10 * pvtest.time_factor()),
          'session of the deleted account still open')
    rows = store_rows(srv, 'roster.items')
    check(not [r for r in rows if r[1] == 'rob'],
          'rows of the deleted account left: %s' % rows)
    check((d, 'sara', R) not in rows and (d, 'tom', R) not in rows,
          "contacts' rows for the deleted account left: %s" % rows)
    meta = store_rows(srv, 'roster.meta')
    check(not [r for r in meta if r[1] == 'rob'],
          'roster.meta row of the deleted account left: %s' % meta)
    sara.close()
    tom.close()


@suite.test
def offline_account_deletion():
    """palaverctl deluser with palaverd stopped fires the same events
    in-process (CONTRACTS.md §1)."""
    srv = server()
    d = srv.domain
    U, V = bare(srv, 'uma'), bare(srv, 'vic')
    uma = online(srv, 'uma')
    vic = online(srv, 'vic')
    subscribe_both(srv, uma, vic, 'uma', 'vic')
    uma.close()
    vic.close()
    srv.stop()
    try:
        srv.ctl('deluser', U)
        rows = store_rows(srv, 'roster.items')
        check(not [r for r in rows if r[1] == 'uma'],
              'rows of the account deleted offline left: %s' % rows)
        check((d, 'vic', U) not in rows,
              "vic's row for the account deleted offline left: %s" % rows)
    finally:
        srv.start()
    vic = online(srv, 'vic', 'after')
    check(U not in roster(vic), 'deleted account in the roster')
    vic.close()


@suite.test
def scenarios():
    srv = server()
    files = scenario_files()
    if not files:
        pvtest.skip('no rfc6121_presence_*.scn')
    for f in files:
        rc, out = pvtest.run_scenario(srv, f)
        if rc != 0:
            pvtest.fail('%s: scn_runner exit %d\n%s' %
                        (os.path.basename(f), rc, pvtest.indent(out)))


if __name__ == '__main__':
    suite.main()
