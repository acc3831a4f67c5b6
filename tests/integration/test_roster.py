#!/usr/bin/python3
# mod_roster (RFC 6121 §2): get/set/remove with pushes to every interested
# resource (and none to a resource that never asked), the §2.1.5/§2.3.3
# refusals, versioning (§2.6: an empty result and only the changes since
# the client's version, also after a restart), the roster_max_items
# limit, the stream features, and the rows in the store. The libstrophe
# scenarios tests/scenarios/rfc6121_roster_*.scn run here too.

import glob
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, NS_CLIENT  # noqa: E402

NS_ROSTER = 'jabber:iq:roster'
Q = '{%s}query' % NS_ROSTER
ITEM = '{%s}item' % NS_ROSTER
GROUP = '{%s}group' % NS_ROSTER
MODULES = pvtest.CORE_MODULES + ['roster', 'presence']
MAX_ITEMS = 5

suite = pvtest.Suite('roster')

USERS = {u: u + '-pw' for u in ('alice', 'bob', 'vera', 'lim', 'errs',
                                'feat')}


def scenario_files():
    return sorted(glob.glob(os.path.join(pvtest.scenarios_dir(),
                                         'rfc6121_roster_*.scn')))


def scenario_users():
    users = {}
    for f in scenario_files():
        for _name, jid, pw in pvtest.scenario_clients(f):
            users[jid.split('/')[0].split('@')[0]] = pw
    return users


def server():
    if pvtest.available_modules(['roster', 'presence']) != ['roster',
                                                             'presence']:
        pvtest.skip('mod_roster/mod_presence not built')
    users = dict(USERS)
    users.update(scenario_users())
    return suite.shared_server(users=users, modules=MODULES,
                               roster_max_items=MAX_ITEMS)


def iq(c, xml):
    """c.iq() that keeps what arrives before the answer (pushes may come
    first, RFC 6121 §2.3.2) queued for the next recv."""
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


def is_push(el):
    return (el.tag == '{%s}iq' % NS_CLIENT and el.get('type') == 'set' and
            el.find(Q) is not None)


def items(el):
    q = el.find(Q)
    return {} if q is None else {i.get('jid'): i for i in q.findall(ITEM)}


def get_roster(c, ver=None, iq_id='get'):
    v = '' if ver is None else " ver='%s'" % ver
    r = iq(c, "<iq type='get' id='%s'><query xmlns='%s'%s/></iq>" %
             (iq_id, NS_ROSTER, v))
    check_eq(r.get('type'), 'result', 'roster get answer %s' % pvtest.tostr(r))
    return r


def set_item(c, jid, name=None, groups=(), iq_id='set', extra=''):
    n = " name='%s'" % name if name else ''
    g = ''.join('<group>%s</group>' % x for x in groups)
    return iq(c, "<iq type='set' id='%s'><query xmlns='%s'><item jid='%s'%s%s>"
                "%s</item></query></iq>" % (iq_id, NS_ROSTER, jid, n, extra,
                                            g))


def remove_item(c, jid, iq_id='rm'):
    return iq(c, "<iq type='set' id='%s'><query xmlns='%s'><item jid='%s' "
                "subscription='remove'/></query></iq>" % (iq_id, NS_ROSTER,
                                                          jid))


def push(c, jid, what='roster push'):
    el = c.recv_until(lambda e: is_push(e) and jid in items(e), what=what)
    return items(el)[jid], el


def no_push(c, timeout=1.0):
    try:
        el = c.recv_until(is_push, timeout=timeout)
    except pvtest.TestFailure:
        return
    pvtest.fail('unexpected roster push %s' % pvtest.tostr(el))


def err_cond(el):
    return pvtest.stanza_error(el)[1]


@suite.test
def crud_and_pushes():
    srv = server()
    d = srv.domain
    a1 = srv.login('alice', resource='one')
    a2 = srv.login('alice', resource='two')
    a3 = srv.login('alice', resource='never-asked')
    get_roster(a1)
    get_roster(a2)
    bob = 'bob@' + d
    r = set_item(a1, bob, 'Bobby', ['Friends', 'Work'])
    check_eq(r.get('type'), 'result', 'roster set answer')
    for c in (a1, a2):
        it, el = push(c, bob)
        check_eq(el.get('to'), c.jid, 'push addressed to the resource')
        check_eq(it.get('name'), 'Bobby', 'pushed name')
        check_eq(it.get('subscription'), 'none', 'pushed subscription')
        check_eq(sorted(g.text for g in it.findall(GROUP)),
                 ['Friends', 'Work'], 'pushed groups')
    # RFC 6121 §2.1.6: only interested resources get pushes
    no_push(a3, 0.5)
    got = items(get_roster(a3))
    check(bob in got and got[bob].get('name') == 'Bobby',
          'roster get after set lacks the item: %s' % list(got))
    # update
    set_item(a2, bob, 'Robert', ['Family'])
    for c in (a1, a2, a3):      # a3 is interested since its get
        it, _ = push(c, bob)
        check_eq(it.get('name'), 'Robert', 'updated name')
        check_eq([g.text for g in it.findall(GROUP)], ['Family'],
                 'updated groups')
    # remove
    r = remove_item(a1, bob)
    check_eq(r.get('type'), 'result', 'remove answer')
    for c in (a1, a2, a3):
        it, _ = push(c, bob, 'removal push')
        check_eq(it.get('subscription'), 'remove', 'removal push')
    check(bob not in items(get_roster(a1)), 'removed item still listed')
    for c in (a1, a2, a3):
        c.close()


@suite.test
def refusals():
    srv = server()
    d = srv.domain
    c = srv.login('errs', resource='r')
    get_roster(c)
    two = ("<iq type='set' id='two'><query xmlns='%s'><item jid='x@%s'/>"
           "<item jid='y@%s'/></query></iq>" % (NS_ROSTER, d, d))
    check_eq(err_cond(iq(c, two)), 'bad-request', 'two items (§2.3.3)')
    r = set_item(c, 'x@' + d, groups=['G', 'G'], iq_id='dup')
    check_eq(err_cond(r), 'bad-request', 'duplicate groups (§2.3.3)')
    r = set_item(c, 'x@' + d, groups=[''], iq_id='empty')
    check_eq(err_cond(r), 'not-acceptable', 'empty group (§2.3.3)')
    r = set_item(c, 'x@' + d, name='n' * 2000, iq_id='long')
    check_eq(err_cond(r), 'not-acceptable', 'over-long name (§2.3.3)')
    check_eq(err_cond(remove_item(c, 'nobody@' + d)), 'item-not-found',
             'removing an unknown item (§2.5.3)')
    r = iq(c, "<iq type='set' id='other' to='bob@%s'><query xmlns='%s'>"
             "<item jid='x@%s'/></query></iq>" % (d, NS_ROSTER, d))
    check_eq(err_cond(r), 'forbidden', "set on another user's roster")
    r = iq(c, "<iq type='get' id='other2' to='bob@%s'><query xmlns='%s'/>"
             "</iq>" % (d, NS_ROSTER))
    check_eq(err_cond(r), 'forbidden', "get of another user's roster")
    r = set_item(c, 'y@' + d, iq_id='jid-bad', extra='')
    check_eq(r.get('type'), 'result', 'plain set')
    r = iq(c, "<iq type='set' id='nojid'><query xmlns='%s'><item name='x'/>"
             "</query></iq>" % NS_ROSTER)
    check_eq(err_cond(r), 'bad-request', 'item without jid')
    # RFC 6121 §2.1.5: a subscription value other than remove is ignored
    r = set_item(c, 'z@' + d, iq_id='sub', extra=" subscription='both'")
    check_eq(r.get('type'), 'result', 'set with subscription=both')
    it = items(get_roster(c, iq_id='g2'))['z@' + d]
    check_eq(it.get('subscription'), 'none', 'client-set subscription')
    c.close()


@suite.test
def versioning():
    srv = server()
    d = srv.domain
    c = srv.login('vera', resource='r')
    r = get_roster(c, ver='')
    ver0 = r.find(Q).get('ver')
    check(ver0, 'no ver in the answer to ver=""')
    for j in ('x', 'y', 'w'):
        set_item(c, '%s@%s' % (j, d), iq_id='add-' + j)
        push(c, '%s@%s' % (j, d))
    r = get_roster(c, ver='')
    v1 = r.find(Q).get('ver')
    check(v1 != ver0, 'version did not change after sets')
    # same version: empty result, nothing else (§2.6.3)
    r = get_roster(c, ver=v1, iq_id='same')
    check(r.find(Q) is None, 'same version answered with a roster: %s' %
          pvtest.tostr(r))
    no_push(c, 0.7)
    # changes after v1: y renamed, x removed, z added; w untouched
    set_item(c, 'y@' + d, name='Yvonne', iq_id='ren')
    remove_item(c, 'x@' + d)
    set_item(c, 'z@' + d, iq_id='add-z')
    for _ in range(3):
        c.recv_until(is_push)
    c2 = srv.login('vera', resource='cache')
    r = get_roster(c2, ver=v1, iq_id='diff')
    check(r.find(Q) is None or not items(r),
          'diff answered with a full roster: %s' % pvtest.tostr(r))
    pushes = []
    while True:
        try:
            pushes.append(c2.recv_until(is_push, timeout=1.0))
        except pvtest.TestFailure:
            break
    got = [(list(items(p))[0], list(items(p).values())[0]) for p in pushes]
    check_eq([j for j, _ in got], ['y@' + d, 'x@' + d, 'z@' + d],
             'pushed changes since the client version, oldest first')
    check_eq(got[0][1].get('name'), 'Yvonne', 'renamed item')
    check_eq(got[1][1].get('subscription'), 'remove', 'removed item')
    last_ver = pushes[-1].find(Q).get('ver')
    check(last_ver, 'pushes carry no ver')
    # an unknown version gets the full roster
    r = get_roster(c2, ver='bogus', iq_id='bogus')
    check_eq(sorted(items(r)), sorted(['y@' + d, 'w@' + d, 'z@' + d]),
             'full roster for an unknown version')
    check_eq(r.find(Q).get('ver'), last_ver, 'full roster version')
    c.close()
    c2.close()
    # versions are stored: still current after a restart
    srv.restart()
    c = srv.login('vera', resource='again')
    r = get_roster(c, ver=last_ver, iq_id='after')
    check(r.find(Q) is None, 'current version after restart answered with '
          'a roster: %s' % pvtest.tostr(r))
    no_push(c, 0.7)
    r = get_roster(c, iq_id='full')
    check_eq(items(r)['y@' + d].get('name'), 'Yvonne',
             'item name after restart')
    c.close()


@suite.test
def item_limit():
    srv = server()
    d = srv.domain
    c = srv.login('lim', resource='r')
    get_roster(c)
    for i in range(MAX_ITEMS):
        r = set_item(c, 'c%d@%s' % (i, d), iq_id='l%d' % i)
        check_eq(r.get('type'), 'result', 'item %d within the limit' % i)
    r = set_item(c, 'over@' + d, iq_id='over')
    check_eq(pvtest.stanza_error(r), ('cancel', 'not-acceptable'),
             'item past roster_max_items')
    text = r.find('{%s}error/{urn:ietf:params:xml:ns:xmpp-stanzas}text' %
                  NS_CLIENT)
    check(text is not None and str(MAX_ITEMS) in (text.text or ''),
          'the error does not say the limit')
    check('over@' + d not in items(get_roster(c, iq_id='g')),
          'refused item stored')
    # requests of strangers have their own budget: still delivered
    c.send('<presence/>')
    b = srv.login('bob', resource='asker')
    b.send("<presence to='lim@%s' type='subscribe'/>" % d)
    c.recv_until(lambda e: e.tag == '{%s}presence' % NS_CLIENT and
                 e.get('type') == 'subscribe' and
                 e.get('from') == 'bob@' + d,
                 what='subscription request at the item limit')
    b.close()
    r = set_item(c, 'c0@' + d, name='renamed', iq_id='upd')
    check_eq(r.get('type'), 'result', 'updating an item at the limit')
    remove_item(c, 'c1@' + d)
    r = set_item(c, 'over@' + d, iq_id='again')
    check_eq(r.get('type'), 'result', 'adding after a removal')
    c.close()


@suite.test
def stream_features():
    srv = server()
    c = srv.login('feat', resource='r')
    f = c.features
    check(f.find('{urn:xmpp:features:rosterver}ver') is not None,
          'no rosterver stream feature (RFC 6121 §2.6.1)')
    check(f.find('{urn:xmpp:features:pre-approval}sub') is not None,
          'no pre-approval stream feature (RFC 6121 §3.4)')
    c.close()


store_rows = pvtest.store_keys
@suite.test
def stored_rows():
    srv = server()
    d = srv.domain
    c = srv.login('alice', resource='rows')
    get_roster(c)
    set_item(c, 'stored@' + d, iq_id='st')
    c.close()
    rows = store_rows(srv, 'roster.items')
    check((d, 'alice', 'stored@' + d) in rows,
          'roster.items lacks the row of the item set: %s' % rows)


@suite.test
def scenarios():
    srv = server()
    files = scenario_files()
    if not files:
        pvtest.skip('no rfc6121_roster_*.scn')
    for f in files:
        rc, out = pvtest.run_scenario(srv, f)
        if rc != 0:
            pvtest.fail('%s: scn_runner exit %d\n%s' %
                        (os.path.basename(f), rc, pvtest.indent(out)))


if __name__ == '__main__':
    suite.main()
