#!/usr/bin/python3
# mod_vcard (XEP-0054): set and get of one's own vCard, reading another
# user's, refusals (another user's vCard, unknown users, vcard_max_size),
# the stored row surviving a restart and disappearing with the account
# (checked in the LMDB store), plus the tests/scenarios/xep0054_*.scn files.

import glob
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, stanza_error, tostr  # noqa: E402

NS_VCARD = 'vcard-temp'
NS_CLIENT = pvtest.NS_CLIENT
MODULES = ['disco', 'ping', 'vcard']
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw', 'carol': 'car0l-pw'}

suite = pvtest.Suite('vcard')


def server():
    if 'vcard' not in pvtest.available_modules(MODULES):
        pvtest.skip('mod_vcard not built')
    users = dict(USERS)
    for path in scenario_files():
        for _, jid, pw in pvtest.scenario_clients(path):
            users[jid.split('@')[0]] = pw
    return suite.shared_server(users=users, modules=MODULES,
                               vcard_max_size='4K')


def scenario_files():
    return sorted(glob.glob(os.path.join(pvtest.scenarios_dir(),
                                         'xep0054_*.scn')))


store_keys = pvtest.store_keys
def vcard_of(el):
    return el.find('{%s}vCard' % NS_VCARD)


def get_vcard(c, to=None, iq_id='get'):
    to_attr = " to='%s'" % to if to else ''
    return c.iq("<iq type='get' id='%s'%s><vCard xmlns='%s'/></iq>"
                % (iq_id, to_attr, NS_VCARD))


ALICE_VCARD = ("<vCard xmlns='vcard-temp'>"
               "<FN>Alice &amp; Co &lt;3</FN>"
               "<N><FAMILY>Liddell</FAMILY><GIVEN>Alice</GIVEN></N>"
               "<NICKNAME xml:lang='fr'>Alix</NICKNAME>"
               "<EMAIL><INTERNET/><USERID>alice@example.org</USERID></EMAIL>"
               "<DESC>\u00e9t\u00e9 \u2603\n  second line</DESC>"
               "<X-CUSTOM xmlns='urn:example:x' kind='a&quot;b'>v</X-CUSTOM>"
               "</vCard>")


@suite.test
def own_vcard_empty_before_set():
    srv = server()
    c = srv.login('carol', resource='r')
    r = get_vcard(c)
    check_eq(r.get('type'), 'result', 'get of a never-set vCard')
    v = vcard_of(r)
    check(v is not None, 'no <vCard/> in %s' % tostr(r))
    check_eq(len(list(v)), 0, 'children of an empty vCard')
    c.close()


@suite.test
def set_and_get_own_vcard():
    srv = server()
    c = srv.login('alice', resource='home')
    r = c.iq("<iq type='set' id='set1'>%s</iq>" % ALICE_VCARD)
    check_eq(r.get('type'), 'result', 'vCard set: %s' % tostr(r))
    for to in (None, 'alice@' + srv.domain):
        r = get_vcard(c, to)
        check_eq(r.get('type'), 'result', 'vCard get (to=%s)' % to)
        v = vcard_of(r)
        check(v is not None, 'no vCard in %s' % tostr(r))
        want = pvtest.ET.fromstring(ALICE_VCARD)
        check_eq(tostr(v), tostr(want), 'vCard as stored (to=%s)' % to)
    check(('localhost', 'alice') in store_keys(srv, 'vcard.data'),
          'no vcard.data row for alice')
    # a second set replaces the first
    r = c.iq("<iq type='set' id='set2'><vCard xmlns='vcard-temp'>"
             "<FN>Alice L.</FN></vCard></iq>")
    check_eq(r.get('type'), 'result', 'second vCard set')
    v = vcard_of(get_vcard(c))
    check_eq([e.tag for e in v], ['{vcard-temp}FN'], 'replaced vCard')
    check_eq(v.findtext('{vcard-temp}FN'), 'Alice L.', 'replaced FN')
    c.send("<iq type='set' id='set3'>%s</iq>" % ALICE_VCARD)
    c.recv_until(lambda e: e.get('id') == 'set3', what='set3 answer')
    c.close()


@suite.test
def other_user_reads_vcard():
    srv = server()
    b = srv.login('bob', resource='desk')
    r = get_vcard(b, 'alice@' + srv.domain)
    check_eq(r.get('type'), 'result', 'bob gets alice\'s vCard')
    check_eq(r.get('from'), 'alice@' + srv.domain, 'from of the answer')
    v = vcard_of(r)
    check(v is not None and v.findtext('{vcard-temp}FN') ==
          'Alice & Co <3', 'alice\'s FN as bob sees it: %s' % tostr(r))
    # carol has none: an empty vCard, not an error (XEP-0054 §3.1)
    r = get_vcard(b, 'carol@' + srv.domain)
    check_eq(r.get('type'), 'result', 'vCard of a user without one')
    check_eq(len(list(vcard_of(r))), 0, 'children of carol\'s vCard')
    b.close()


@suite.test
def refusals():
    srv = server()
    b = srv.login('bob', resource='desk')
    r = b.iq("<iq type='set' id='evil' to='alice@%s'><vCard "
             "xmlns='vcard-temp'><FN>pwned</FN></vCard></iq>" % srv.domain)
    check_eq(stanza_error(r), ('auth', 'forbidden'),
             'setting another user\'s vCard')
    a = srv.login('alice', resource='check')
    check_eq(vcard_of(get_vcard(a)).findtext('{vcard-temp}FN'),
             'Alice & Co <3', 'alice\'s vCard after bob\'s attempt')
    # an unknown account is the router's: service-unavailable
    r = get_vcard(b, 'nobody@' + srv.domain)
    check_eq(stanza_error(r), ('cancel', 'service-unavailable'),
             'vCard of an unknown user')
    a.close()
    b.close()


@suite.test
def size_limit():
    srv = server()     # vcard_max_size = "4K"
    c = srv.login('bob', resource='big')
    small = "<vCard xmlns='vcard-temp'><FN>Bob</FN><PHOTO><TYPE>image/png" \
            "</TYPE><BINVAL>%s</BINVAL></PHOTO></vCard>" % ('A' * 3000)
    r = c.iq("<iq type='set' id='small'>%s</iq>" % small)
    check_eq(r.get('type'), 'result', 'a 3 KB vCard under the 4K limit')
    big = small.replace('A' * 3000, 'B' * 5000)
    r = c.iq("<iq type='set' id='big'>%s</iq>" % big)
    check_eq(stanza_error(r), ('modify', 'not-acceptable'),
             'a 5 KB vCard over vcard_max_size')
    text = r.find('{%s}error/{%s}text' % (NS_CLIENT, pvtest.NS_STANZA_ERR))
    check(text is not None and '4096' in (text.text or ''),
          'error text does not state the limit: %s' % tostr(r))
    v = vcard_of(get_vcard(c))
    check_eq(len(v.findtext('{vcard-temp}PHOTO/{vcard-temp}BINVAL')), 3000,
             'stored photo after the refused set')
    c.close()


@suite.test
def empty_set_clears():
    srv = server()
    c = srv.login('carol', resource='r')
    c.iq("<iq type='set' id='s'><vCard xmlns='vcard-temp'><FN>C</FN>"
         "</vCard></iq>")
    check(('localhost', 'carol') in store_keys(srv, 'vcard.data'),
          'no row for carol after a set')
    r = c.iq("<iq type='set' id='clear'><vCard xmlns='vcard-temp'/></iq>")
    check_eq(r.get('type'), 'result', 'set of an empty vCard')
    check(('localhost', 'carol') not in store_keys(srv, 'vcard.data'),
          'an empty vCard left a row')
    check_eq(len(list(vcard_of(get_vcard(c)))), 0, 'cleared vCard')
    c.close()


@suite.test
def survives_restart():
    srv = server()
    srv.restart()
    c = srv.login('alice', resource='again')
    v = vcard_of(get_vcard(c))
    check_eq(tostr(v), tostr(pvtest.ET.fromstring(ALICE_VCARD)),
             'alice\'s vCard after a restart')
    c.close()


@suite.test
def removed_with_account():
    srv = server()
    srv.ctl('adduser', 'dora@' + srv.domain, input='d0ra-pw\n')
    c = srv.login('dora', 'd0ra-pw', resource='r')
    r = c.iq("<iq type='set' id='s'><vCard xmlns='vcard-temp'><FN>Dora</FN>"
             "</vCard></iq>")
    check_eq(r.get('type'), 'result', 'dora sets a vCard')
    check(('localhost', 'dora') in store_keys(srv, 'vcard.data'),
          'no vcard.data row for dora before deletion')
    srv.ctl('deluser', 'dora@' + srv.domain)
    check(('localhost', 'dora') not in store_keys(srv, 'vcard.data'),
          'vcard.data row of dora left after deluser')
    check(('localhost', 'alice') in store_keys(srv, 'vcard.data'),
          'deleting dora removed alice\'s row too')
    # the account is gone: its vCard is the router's unknown user now
    b = srv.login('bob', resource='after')
    check_eq(stanza_error(get_vcard(b, 'dora@' + srv.domain)),
             ('cancel', 'service-unavailable'), 'vCard of a deleted user')
    b.close()


@suite.test
def disco_feature():
    srv = server()
    c = srv.login('bob', resource='disco')
    r = c.iq("<iq type='get' id='d' to='%s'><query xmlns='http://jabber.org"
             "/protocol/disco#info'/></iq>" % srv.domain)
    feats = [f.get('var') for f in r.iter(
        '{http://jabber.org/protocol/disco#info}feature')]
    check('vcard-temp' in feats, 'vcard-temp not in disco: %s' % feats)
    c.close()


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
