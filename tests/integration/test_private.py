#!/usr/bin/python3
# mod_private (XEP-0049): private XML round trips (XEP-0048 bookmarks,
# several elements in one set, replacement, restart), the refusals (empty
# query, no namespace, reserved namespaces, another user's data,
# private_max_size) and rows removed with the account (checked in the LMDB
# store), plus the tests/scenarios/xep0049_*.scn files.

import glob
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, stanza_error, tostr  # noqa: E402

NS_PRIVATE = 'jabber:iq:private'
MODULES = ['disco', 'ping', 'private']
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw'}

suite = pvtest.Suite('private')


def scenario_files():
    return sorted(glob.glob(os.path.join(pvtest.scenarios_dir(),
                                         'xep0049_*.scn')))


def server():
    if 'private' not in pvtest.available_modules(MODULES):
        pvtest.skip('mod_private not built')
    users = dict(USERS)
    for path in scenario_files():
        for _, jid, pw in pvtest.scenario_clients(path):
            users[jid.split('@')[0]] = pw
    return suite.shared_server(users=users, modules=MODULES,
                               private_max_size='8K')


store_keys = pvtest.store_keys
def private_get(c, inner, iq_id='g', to=None):
    to_attr = " to='%s'" % to if to else ''
    return c.iq("<iq type='get' id='%s'%s><query xmlns='%s'>%s</query></iq>"
                % (iq_id, to_attr, NS_PRIVATE, inner))


def private_set(c, inner, iq_id='s', to=None):
    to_attr = " to='%s'" % to if to else ''
    return c.iq("<iq type='set' id='%s'%s><query xmlns='%s'>%s</query></iq>"
                % (iq_id, to_attr, NS_PRIVATE, inner))


def stored(r):
    q = r.find('{%s}query' % NS_PRIVATE)
    check(q is not None, 'no <query/> in %s' % tostr(r))
    return list(q)


BOOKMARKS = ("<storage xmlns='storage:bookmarks'>"
             "<conference name='Council &amp; Co' autojoin='true' "
             "jid='council@conference.example.org'>"
             "<nick>Alice</nick><password>s3cr&lt;t</password></conference>"
             "<url name='Home' url='https://example.org/?a=1&amp;b=2'/>"
             "</storage>")
PREFS = "<prefs xmlns='urn:example:prefs'><theme>dark</theme></prefs>"


@suite.test
def bookmarks_round_trip():
    srv = server()
    c = srv.login('alice', resource='a')
    r = private_get(c, "<storage xmlns='storage:bookmarks'/>", 'g0')
    check_eq(r.get('type'), 'result', 'get before any set')
    got = stored(r)
    check(len(got) == 1 and got[0].tag == '{storage:bookmarks}storage' and
          len(list(got[0])) == 0, 'empty bookmarks: %s' % tostr(r))
    # XEP-0049 §2.3: several elements in one set
    r = private_set(c, BOOKMARKS + PREFS, 's1')
    check_eq(r.get('type'), 'result', 'set of bookmarks and prefs')
    got = stored(private_get(c, "<storage xmlns='storage:bookmarks'/>",
                             'g1'))
    check_eq([tostr(e) for e in got],
             [tostr(pvtest.ET.fromstring(BOOKMARKS))], 'bookmarks read back')
    got = stored(private_get(c, "<prefs xmlns='urn:example:prefs'/>", 'g2',
                             to='alice@' + srv.domain))
    check_eq([tostr(e) for e in got], [tostr(pvtest.ET.fromstring(PREFS))],
             'prefs read back (to own bare JID)')
    keys = store_keys(srv, 'private.data')
    for k in ('storage storage:bookmarks', 'prefs urn:example:prefs'):
        check(('localhost', 'alice', k) in keys,
              'no private.data row %r: %s' % (k, keys))
    # a set replaces only the elements it names
    r = private_set(c, "<prefs xmlns='urn:example:prefs'><theme>light"
                    "</theme></prefs>", 's2')
    check_eq(r.get('type'), 'result', 'replacing prefs')
    got = stored(private_get(c, "<prefs xmlns='urn:example:prefs'/>", 'g3'))
    check_eq(got[0].findtext('{urn:example:prefs}theme'), 'light',
             'replaced prefs')
    got = stored(private_get(c, "<storage xmlns='storage:bookmarks'/>",
                             'g4'))
    check_eq(len(list(got[0])), 2, 'bookmarks after the prefs change')
    c.close()


@suite.test
def same_name_other_namespace_is_separate():
    srv = server()
    c = srv.login('alice', resource='ns')
    private_set(c, "<storage xmlns='storage:rosternotes'><note jid='x@y'>"
                "hi</note></storage>", 'n1')
    got = stored(private_get(c, "<storage xmlns='storage:bookmarks'/>",
                             'n2'))
    check_eq(got[0].find('{storage:bookmarks}conference') is not None, True,
             'bookmarks clobbered by storage:rosternotes')
    got = stored(private_get(c, "<storage xmlns='storage:rosternotes'/>",
                             'n3'))
    check_eq(got[0].findtext('{storage:rosternotes}note'), 'hi',
             'roster notes')
    c.close()


@suite.test
def refusals():
    srv = server()
    c = srv.login('alice', resource='r')
    cases = [
        ('empty query (set)', private_set, '', ('modify', 'bad-request')),
        ('empty query (get)', private_get, '', ('modify', 'bad-request')),
        ('element without namespace', private_set,
         "<data xmlns=''>x</data>", ('modify', 'bad-request')),
        ('jabber:iq:roster', private_set,
         "<query xmlns='jabber:iq:roster'/>", ('modify', 'not-acceptable')),
        ('jabber:x:data (get)', private_get,
         "<x xmlns='jabber:x:data'/>", ('modify', 'not-acceptable')),
        ('vcard-temp', private_set,
         "<vCard xmlns='vcard-temp'><FN>x</FN></vCard>",
         ('modify', 'not-acceptable')),
    ]
    for i, (what, fn, inner, want) in enumerate(cases):
        r = fn(c, inner, 'bad%d' % i)
        check_eq(stanza_error(r), want, what)
    # nothing of a refused set was stored
    check(not any(k[1] == 'alice' and 'vcard-temp' in k[2]
                  for k in store_keys(srv, 'private.data')),
          'a refused element was stored')
    b = srv.login('bob', resource='spy')
    for fn, iq_id in ((private_get, 'spy-get'), (private_set, 'spy-set')):
        r = fn(b, BOOKMARKS.replace('Alice', 'Bob'), iq_id,
               to='alice@' + srv.domain)
        check_eq(stanza_error(r), ('auth', 'forbidden'),
                 '%s of another user\'s private data' % iq_id)
    got = stored(private_get(c, "<storage xmlns='storage:bookmarks'/>",
                             'after'))
    check_eq(got[0].findtext('{storage:bookmarks}conference/'
                             '{storage:bookmarks}nick'), 'Alice',
             'alice\'s bookmarks after bob\'s attempt')
    b.close()
    c.close()


@suite.test
def size_limit():
    srv = server()      # private_max_size = "8K" per account
    c = srv.login('bob', resource='big')
    r = private_set(c, "<blob xmlns='urn:example:a'>%s</blob>" % ('a' * 5000),
                    'a')
    check_eq(r.get('type'), 'result', '5 KB under the 8K limit')
    r = private_set(c, "<blob xmlns='urn:example:b'>%s</blob>" % ('b' * 5000),
                    'b')
    check_eq(stanza_error(r), ('modify', 'not-acceptable'),
             'a second 5 KB element over the 8K total')
    check(not any(k[1] == 'bob' and k[2] == 'blob urn:example:b'
                  for k in store_keys(srv, 'private.data')),
          'the refused element was stored')
    # replacing the first element does not count it twice
    r = private_set(c, "<blob xmlns='urn:example:a'>%s</blob>" % ('c' * 6000),
                    'c')
    check_eq(r.get('type'), 'result', 'replacing 5 KB by 6 KB under 8K')
    got = stored(private_get(c, "<blob xmlns='urn:example:a'/>", 'd'))
    check_eq(got[0].text, 'c' * 6000, 'replaced blob')
    c.close()


@suite.test
def survives_restart_and_goes_with_account():
    srv = server()
    srv.ctl('adduser', 'eve@' + srv.domain, input='ev3-pw\n')
    c = srv.login('eve', 'ev3-pw', resource='r')
    check_eq(private_set(c, BOOKMARKS + PREFS, 'e1').get('type'), 'result',
             'eve stores bookmarks')
    c.close()
    srv.restart()
    c = srv.login('eve', 'ev3-pw', resource='r2')
    got = stored(private_get(c, "<storage xmlns='storage:bookmarks'/>",
                             'e2'))
    check_eq([tostr(e) for e in got],
             [tostr(pvtest.ET.fromstring(BOOKMARKS))],
             'bookmarks after a restart')
    c.close()
    check(len([k for k in store_keys(srv, 'private.data')
               if k[:2] == ('localhost', 'eve')]) == 2,
          'eve should have two private.data rows')
    srv.ctl('deluser', 'eve@' + srv.domain)
    left = [k for k in store_keys(srv, 'private.data')
            if k[:2] == ('localhost', 'eve')]
    check_eq(left, [], 'private.data rows of eve after deluser')
    check(any(k[:2] == ('localhost', 'alice')
              for k in store_keys(srv, 'private.data')),
          'deleting eve removed alice\'s rows too')


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
