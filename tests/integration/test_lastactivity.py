#!/usr/bin/python3
# mod_lastactivity (XEP-0012): the server's uptime, an account's last
# logout (seconds and the status of its last unavailable presence) for
# the owner and for contacts with a subscription 'from'/'both' only
# (strangers, 'to'-only and pending contacts get forbidden), seconds='0'
# while the account is online, a full JID left to the client, unknown
# accounts and accounts that never logged out, the stored row surviving a
# restart and going with the account (checked in the LMDB store), plus
# the tests/scenarios/xep0012_*.scn files.

import glob
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, stanza_error, tostr  # noqa: E402

NS_LAST = 'jabber:iq:last'
NS_CLIENT = pvtest.NS_CLIENT
NS_ROSTER = 'jabber:iq:roster'
IQ = '{%s}iq' % NS_CLIENT
PRES = '{%s}presence' % NS_CLIENT
Q = '{%s}query' % NS_LAST
MODULES = ['disco', 'ping', 'roster', 'presence', 'lastactivity']
NAMES = ('alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'hank',
         'ivy', 'jack')
USERS = {u: u + '-la-pw' for u in NAMES}

suite = pvtest.Suite('lastactivity')


def scenario_files():
    return sorted(glob.glob(os.path.join(pvtest.scenarios_dir(),
                                         'xep0012_*.scn')))


def server():
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('mod_roster/mod_presence/mod_lastactivity not built')
    users = dict(USERS)
    for path in scenario_files():
        for _, jid, pw in pvtest.scenario_clients(path):
            users[jid.split('/')[0].split('@')[0]] = pw
    return suite.shared_server(users=users, modules=MODULES)


def bare(srv, user):
    return '%s@%s' % (user, srv.domain)


# --- clients ----------------------------------------------------------------

def expect(c, pred, timeout=None, what='element'):
    """The first queued or arriving element matching pred; the others stay
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
                         [tostr(e) for e in c.pending] or 'nothing'))
        try:
            c._recv_some(left)
        except pvtest.StreamClosed:
            pass


def iq(c, xml):
    """Sends an IQ and returns its answer; other stanzas stay queued."""
    iq_id = pvtest.ET.fromstring(xml).get('id')
    c.send(xml)
    return expect(c, lambda e: e.tag == IQ and e.get('id') == iq_id and
                  e.get('type') in ('result', 'error'),
                  what='answer to iq %s' % iq_id)


def online(srv, user, resource='r', status=None):
    """Logs in, asks for the roster, sends initial presence."""
    c = srv.login(user, resource=resource)
    iq(c, "<iq type='get' id='roster'><query xmlns='%s'/></iq>" % NS_ROSTER)
    st = '<status>%s</status>' % status if status else ''
    c.send('<presence>%s</presence>' % st)
    expect(c, lambda e: e.tag == PRES and e.get('from') == c.jid,
           what='own presence')
    return c


def presence_from(c, frm, type_):
    return expect(c, lambda e: e.tag == PRES and
                  (e.get('from') or '').split('/')[0] == frm and
                  e.get('type') == type_,
                  what='presence type=%s from %s' % (type_, frm))


def subscribe(srv, a, b, ua, ub):
    """a (user ua) subscribes to b's (ub) presence and b approves: b's
    roster then has ua with subscription 'from'."""
    a.send("<presence to='%s' type='subscribe'/>" % bare(srv, ub))
    presence_from(b, bare(srv, ua), 'subscribe')
    b.send("<presence to='%s' type='subscribed'/>" % bare(srv, ua))
    presence_from(a, bare(srv, ub), 'subscribed')


def bob_follows_alice(srv):
    """bob subscribed to alice's presence, approved (her item for bob:
    'from'); done once per server, so each test can run alone."""
    if getattr(srv, 'la_subscribed', False):
        return
    alice = online(srv, 'alice', 'setup')
    bob = online(srv, 'bob', 'setup')
    subscribe(srv, bob, alice, 'bob', 'alice')
    alice.close()
    bob.close()
    srv.la_subscribed = True


def logout(c, status=None):
    """Unavailable presence (with a status), then the stream ends."""
    st = '<status>%s</status>' % status if status else ''
    c.send("<presence type='unavailable'>%s</presence>" % st)
    # a round trip: the presence has been handled before the stream ends
    r = iq(c, "<iq type='get' id='sync' to='%s'><ping xmlns='urn:xmpp:"
           "ping'/></iq>" % c.domain)
    check_eq(r.get('type'), 'result', 'ping after the unavailable')
    c.close()


def last(c, to, iq_id='last'):
    return iq(c, "<iq type='get' id='%s' to='%s'><query xmlns='%s'/></iq>"
              % (iq_id, to, NS_LAST))


def seconds_of(r, what):
    check_eq(r.get('type'), 'result', '%s: %s' % (what, tostr(r)))
    q = r.find(Q)
    check(q is not None, '%s: no <query/> in %s' % (what, tostr(r)))
    s = q.get('seconds')
    check(s is not None and s.isdigit(),
          "%s: seconds='%s' is not a number" % (what, s))
    return int(s), (q.text or '')


def wait_logout_row(srv, user):
    """Waits until the KEYVAL row of user is committed (its write is
    asynchronous)."""
    deadline = time.monotonic() + 5 * pvtest.time_factor()
    while time.monotonic() < deadline:
        if ('localhost', user) in store_keys(srv, 'lastactivity.last'):
            return
        time.sleep(0.05)
    pvtest.fail('no lastactivity.last row for %s' % user)


store_keys = pvtest.store_keys
# --- tests ------------------------------------------------------------------

@suite.test
def disco_feature():
    srv = server()
    c = srv.login('jack', resource='disco')
    r = c.iq("<iq type='get' id='d' to='%s'><query xmlns='http://jabber.org"
             "/protocol/disco#info'/></iq>" % srv.domain)
    feats = [f.get('var') for f in r.iter(
        '{http://jabber.org/protocol/disco#info}feature')]
    check(NS_LAST in feats, '%s not in disco: %s' % (NS_LAST, feats))
    c.close()


@suite.test
def server_uptime():
    srv = server()
    c = srv.login('jack', resource='up')
    r = last(c, srv.domain, 'up1')
    check_eq(r.get('from'), srv.domain, 'from of the uptime answer')
    first, text = seconds_of(r, 'uptime')
    check_eq(text.strip(), '', 'text of the uptime answer (XEP-0012 §5)')
    time.sleep(1.3)
    second, _ = seconds_of(last(c, srv.domain, 'up2'), 'uptime later')
    check(second >= first + 1, 'uptime did not grow: %d then %d after '
          '1.3 s' % (first, second))
    check(second < 3600, 'uptime %d s for a server started just now'
          % second)
    c.close()


@suite.test
def contact_after_logout():
    """bob is subscribed to alice's presence (her item: from)."""
    srv = server()
    alice = online(srv, 'alice', 'balcony')
    bob = online(srv, 'bob', 'orchard')
    if not getattr(srv, 'la_subscribed', False):
        subscribe(srv, bob, alice, 'bob', 'alice')
        srv.la_subscribed = True
    presence_from(bob, bare(srv, 'alice'), None)   # her presence
    # online: seconds='0' and no text (XEP-0012 §3), answered by the
    # server on her behalf: her client sees no IQ
    n, text = seconds_of(last(bob, bare(srv, 'alice'), 'on'),
                         'alice online')
    check_eq((n, text), (0, ''), 'answer while alice is online')
    logout(alice, 'Heading Home')
    presence_from(bob, bare(srv, 'alice'), 'unavailable')
    time.sleep(1.5)
    r = last(bob, bare(srv, 'alice'), 'off')
    check_eq(r.get('from'), bare(srv, 'alice'), 'from of the answer')
    n, text = seconds_of(r, 'alice offline')
    check(1 <= n <= 30, 'seconds=%d, 1.5 s after the logout' % n)
    check_eq(text, 'Heading Home', 'status of the last unavailable')
    wait_logout_row(srv, 'alice')
    bob.close()


@suite.test
def refusals():
    """carol: a stranger; dave: alice subscribed to him, not he to her
    (her item: to); erin: asked, never approved (pending in)."""
    srv = server()
    A = bare(srv, 'alice')
    alice = online(srv, 'alice', 'refusals')
    dave = online(srv, 'dave', 'd')
    subscribe(srv, alice, dave, 'alice', 'dave')
    erin = online(srv, 'erin', 'e')
    erin.send("<presence to='%s' type='subscribe'/>" % A)
    presence_from(alice, 'erin@' + srv.domain, 'subscribe')
    alice.close()
    carol = srv.login('carol', resource='c')
    for who, c in (('stranger carol', carol), ("'to'-only dave", dave),
                   ('pending erin', erin)):
        r = last(c, A, 'x')
        check_eq(stanza_error(r), ('auth', 'forbidden'),
                 '%s asking for alice: %s' % (who, tostr(r)))
        check(r.find(Q) is None or r.find(Q).get('seconds') is None,
              '%s got seconds: %s' % (who, tostr(r)))
    # while alice is online too: her availability is not revealed
    alice = online(srv, 'alice', 'refusals2')
    r = last(carol, A, 'y')
    check_eq(stanza_error(r), ('auth', 'forbidden'),
             'stranger asking while alice is online')
    alice.close()
    for c in (carol, dave, erin):
        c.close()


@suite.test
def owner_asks():
    srv = server()
    A = bare(srv, 'alice')
    a1 = online(srv, 'alice', 'one')
    logout(a1, 'gone to Mantua')
    time.sleep(1.2)
    # a resource without presence is not available: the last logout
    a2 = srv.login('alice', resource='two')
    n, text = seconds_of(last(a2, A, 'self'), 'alice asks herself')
    check(n >= 1, 'seconds=%d for alice herself' % n)
    check_eq(text, 'gone to Mantua', 'alice sees her own status')
    # and once available, 0
    a2.send('<presence/>')
    n, text = seconds_of(last(a2, A, 'self2'), 'alice online asks herself')
    check_eq((n, text), (0, ''), 'alice online asks herself')
    a2.close()


@suite.test
def close_without_unavailable():
    """A stream closed while available is a logout without status; it
    replaces the previous record."""
    srv = server()
    bob_follows_alice(srv)
    A = bare(srv, 'alice')
    bob = srv.login('bob', resource='watch')
    a = online(srv, 'alice', 'abrupt', status='busy')
    a.close()
    time.sleep(0.3)
    n, text = seconds_of(last(bob, A, 'abrupt'), 'after an abrupt close')
    check(n <= 5, 'seconds=%d right after the close' % n)
    check_eq(text, '', 'status after a close without unavailable')
    bob.close()


@suite.test
def last_of_several_resources():
    srv = server()
    bob_follows_alice(srv)
    A = bare(srv, 'alice')
    bob = srv.login('bob', resource='multi')
    a1 = online(srv, 'alice', 'm1')
    a2 = online(srv, 'alice', 'm2')
    logout(a1, 'first one leaves')
    n, text = seconds_of(last(bob, A, 'm1'), 'one resource left')
    check_eq((n, text), (0, ''), 'alice still has an available resource')
    time.sleep(1.2)
    # a resource that goes unavailable but stays connected is a logout
    # when it is the last available one
    a2.send("<presence type='unavailable'><status>m2 out</status>"
            "</presence>")
    time.sleep(0.3)
    n, text = seconds_of(last(bob, A, 'm2'), 'no resource left')
    check(n <= 1, 'seconds=%d: the logout is m2\'s, not m1\'s' % n)
    check_eq(text, 'm2 out', 'status of the last resource to leave')
    a2.close()
    bob.close()


@suite.test
def full_jid_goes_to_client():
    srv = server()
    bob = srv.login('bob', resource='full')
    a = online(srv, 'alice', 'fulljid')
    bob.send("<iq type='get' id='f1' to='%s'><query xmlns='%s'/></iq>"
             % (a.jid, NS_LAST))
    got = expect(a, lambda e: e.tag == IQ and e.get('id') == 'f1',
                 what='the query to the full JID')
    check_eq(got.get('type'), 'get', 'the client receives the get')
    check_eq(got.get('from'), bob.jid, 'from of the routed query')
    a.send("<iq type='result' id='f1' to='%s'><query xmlns='%s' "
           "seconds='42'/></iq>" % (bob.jid, NS_LAST))
    r = expect(bob, lambda e: e.tag == IQ and e.get('id') == 'f1',
               what='the client\'s answer')
    check_eq(r.find(Q).get('seconds'), '42', 'the client\'s own answer')
    a.close()
    bob.close()


@suite.test
def unknown_and_never():
    srv = server()
    bob = srv.login('bob', resource='unknown')
    r = last(bob, bare(srv, 'nobody'), 'u')
    check_eq(stanza_error(r), ('cancel', 'service-unavailable'),
             'last activity of an unknown account')
    # gina never logged in: nothing to tell her either
    g = srv.login('gina', resource='g')
    r = last(g, bare(srv, 'gina'), 'never')
    check_eq(stanza_error(r), ('cancel', 'item-not-found'),
             'an account that never logged out')
    g.close()
    bob.close()


@suite.test
def survives_restart():
    srv = server()
    bob_follows_alice(srv)
    A = bare(srv, 'alice')
    alice = online(srv, 'alice', 'restart')
    logout(alice, 'see you after the restart')
    wait_logout_row(srv, 'alice')
    bob = srv.login('bob', resource='before')
    up_before, _ = seconds_of(last(bob, srv.domain, 'ub'), 'uptime')
    bob.close()
    time.sleep(1.1)
    srv.restart()
    bob = srv.login('bob', resource='after')
    n, text = seconds_of(last(bob, A, 'r'), 'after the restart')
    check(n >= 1, 'seconds=%d after a restart' % n)
    check_eq(text, 'see you after the restart', 'status after a restart')
    up_after, _ = seconds_of(last(bob, srv.domain, 'ua'), 'uptime')
    check(up_after <= up_before, 'uptime %d after a restart, %d before'
          % (up_after, up_before))
    bob.close()


@suite.test
def removed_with_account():
    srv = server()
    srv.ctl('adduser', 'ida@' + srv.domain, input='ida-la-pw\n')
    c = srv.login('ida', 'ida-la-pw', resource='r')
    c.send('<presence/>')
    logout(c, 'bye')
    wait_logout_row(srv, 'ida')
    srv.ctl('deluser', 'ida@' + srv.domain)
    check(('localhost', 'ida') not in store_keys(srv, 'lastactivity.last'),
          'lastactivity.last row of ida left after deluser')
    # deleting an online account closes its sessions after the rows are
    # gone: that logout must not write a row again
    srv.ctl('adduser', 'ida@' + srv.domain, input='ida-la-pw\n')
    c = srv.login('ida', 'ida-la-pw', resource='r2')
    c.send('<presence/>')
    expect(c, lambda e: e.tag == PRES and e.get('from') == c.jid,
           what='own presence')
    srv.ctl('deluser', 'ida@' + srv.domain)
    c.wait_closed(5 * pvtest.time_factor())
    time.sleep(0.5)
    check(('localhost', 'ida') not in store_keys(srv, 'lastactivity.last'),
          'a row for ida written by the logout of its deletion')
    check(('localhost', 'alice') in store_keys(srv, 'lastactivity.last'),
          'deleting ida removed alice\'s row too')


def scenario_test(path):
    def test():
        srv = server()
        rc, out = pvtest.run_scenario(srv, path)
        if rc == 77:
            pvtest.skip(out.strip().splitlines()[-1])
        if rc != 0:
            pvtest.fail('scn_runner exit %d\n%s' % (rc, pvtest.indent(out)))
    test.__name__ = os.path.basename(path)[:-4]
    return test


for _p in scenario_files():
    suite.test(scenario_test(_p))

if __name__ == '__main__':
    suite.main()
