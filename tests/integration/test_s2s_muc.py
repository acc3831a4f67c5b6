#!/usr/bin/python3
"""Group chats across domains (issues 6 and 8): two palaverd (a2.example
and b2.example, each with mod_muc on conference.<domain>) and Debian's
Prosody (c2.example with its MUC component conference.c2.example). Users
of the other Palaver and of Prosody join a Palaver room, and a Palaver
user joins the Prosody room: presence, self-presence with status 110 and
groupchat messages in both directions over s2s, which carries the MUC
component's own domain (certificates name conference.<domain>)."""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pvtest                                          # noqa: E402
from pvtest import check, check_eq, NS_CLIENT          # noqa: E402
from s2s_helpers import PalaverPeer, ProsodyPeer, DnsStub  # noqa: E402

suite = pvtest.Suite('test_s2s_muc')
CA_DIR = tempfile.mkdtemp(prefix='pvtest-s2s-muc-ca-')
pvtest.make_ca(CA_DIR)

A, B, C = 'a2.example', 'b2.example', 'c2.example'
ADDR = {A: '127.0.0.20', B: '127.0.0.23', C: '127.0.0.21'}
DNS_ADDR = '127.0.0.22'
PW = 'secret-pw-2'
NS_MUC = 'http://jabber.org/protocol/muc'
NS_MUC_USER = NS_MUC + '#user'
NS_MUC_OWNER = NS_MUC + '#owner'

_shared = {}


def servers():
    if 'all' in _shared:
        return _shared['all']
    if pvtest.available_modules(['muc']) != ['muc']:
        pvtest.skip('mod_muc not built')
    conf = lambda d: 'conference.' + d       # noqa: E731
    if 'dns' not in _shared:
        _shared['dns'] = DnsStub(DNS_ADDR, {A: ADDR[A], conf(A): ADDR[A],
                                            B: ADDR[B], conf(B): ADDR[B]})
    dns = _shared['dns']
    a = PalaverPeer(suite, A, ADDR[A], CA_DIR,
                    {B: ADDR[B], conf(B): ADDR[B], C: ADDR[C],
                     conf(C): ADDR[C]},
                    {'alice': PW, 'anna': PW}, extra_modules=['muc'])
    b = PalaverPeer(suite, B, ADDR[B], CA_DIR,
                    {A: ADDR[A], conf(A): ADDR[A]},
                    {'bob': PW}, extra_modules=['muc'])
    c = ProsodyPeer(suite, C, ADDR[C], CA_DIR, DNS_ADDR, {'carol': PW},
                    muc=True)
    a.start()
    b.start()
    c.start()
    _shared['all'] = (a, b, c, dns)
    return _shared['all']


def is_presence_from(jid, ptype=None):
    return lambda e: (e.tag == '{%s}presence' % NS_CLIENT and
                      e.get('from') == jid and e.get('type') == ptype)


def statuses(p):
    return {s.get('code') for s in
            p.findall('{%s}x/{%s}status' % (NS_MUC_USER, NS_MUC_USER))}


def join(client, occupant):
    """Enters the room as occupant (room@service/nick); returns the
    self-presence (status 110)."""
    client.send("<presence to='%s'><x xmlns='%s'/></presence>"
                % (occupant, NS_MUC))
    p = client.recv_until(
        lambda e: (e.tag == '{%s}presence' % NS_CLIENT and
                   e.get('from') == occupant and '110' in statuses(e)) or
        (e.tag == '{%s}presence' % NS_CLIENT and
         e.get('type') == 'error'),
        what='self-presence from %s' % occupant,
        timeout=20 * pvtest.time_factor())
    check(p.get('type') is None, 'join %s refused: %s'
          % (occupant, pvtest.tostr(p)))
    return p


def create(client, occupant):
    """Creates a room as an instant room (XEP-0045 §10.1.2)."""
    p = join(client, occupant)
    room = occupant.split('/')[0]
    if '201' in statuses(p):
        client.send("<iq type='set' id='inst' to='%s'><query xmlns='%s'>"
                    "<x xmlns='jabber:x:data' type='submit'/></query></iq>"
                    % (room, NS_MUC_OWNER))
        r = client.recv_until(lambda e: e.get('id') == 'inst',
                              what='instant room answer')
        check_eq(r.get('type'), 'result', 'instant room')
    return p


def groupchat(sender, room, text):
    sender.send("<message type='groupchat' to='%s'><body>%s</body>"
                "</message>" % (room, text))


def expect_groupchat(client, room_nick, text):
    m = client.recv_until(
        lambda e: (e.tag == '{%s}message' % NS_CLIENT and
                   e.findtext('{%s}body' % NS_CLIENT) == text),
        what='groupchat %r' % text, timeout=20 * pvtest.time_factor())
    check_eq(m.get('type'), 'groupchat', 'type of %r' % text)
    check_eq(m.get('from'), room_nick, 'from of %r' % text)
    return m


@suite.test
def test_remote_users_join_palaver_room():
    a, b, c, _ = servers()
    room = 'fed@conference.%s' % A
    alice = a.login('alice', PW, resource='m')
    create(alice, room + '/alice')
    bob = b.login('bob', PW, resource='m')
    join(bob, room + '/bob')
    # alice sees bob arrive (presence from his occupant JID)
    alice.recv_until(is_presence_from(room + '/bob'),
                     what="bob's occupant presence")
    carol = c.login('carol', PW, resource='m')
    join(carol, room + '/carol')
    for cl in (alice, bob):
        cl.recv_until(is_presence_from(room + '/carol'),
                      what="carol's occupant presence")
    groupchat(alice, room, 'hello-remote')
    for cl in (alice, bob, carol):
        expect_groupchat(cl, room + '/alice', 'hello-remote')
    groupchat(carol, room, 'from-prosody')
    for cl in (alice, bob, carol):
        expect_groupchat(cl, room + '/carol', 'from-prosody')
    groupchat(bob, room, 'from-b2')
    for cl in (alice, bob, carol):
        expect_groupchat(cl, room + '/bob', 'from-b2')
    # leaving is seen across the federation too
    bob.send("<presence type='unavailable' to='%s/bob'/>" % room)
    for cl in (alice, carol):
        cl.recv_until(is_presence_from(room + '/bob', 'unavailable'),
                      what="bob's departure")
    for cl in (alice, bob, carol):
        cl.close()


@suite.test
def test_palaver_user_joins_prosody_room():
    a, _, c, _ = servers()
    room = 'lounge@conference.%s' % C
    carol = c.login('carol', PW, resource='r')
    create(carol, room + '/carol')
    anna = a.login('anna', PW, resource='r')
    join(anna, room + '/anna')
    carol.recv_until(is_presence_from(room + '/anna'),
                     what="anna's occupant presence at Prosody")
    groupchat(anna, room, 'from-palaver')
    for cl in (anna, carol):
        expect_groupchat(cl, room + '/anna', 'from-palaver')
    groupchat(carol, room, 'to-palaver')
    expect_groupchat(anna, room + '/carol', 'to-palaver')
    anna.close()
    carol.close()


def main():
    rc = 1
    try:
        rc = suite.run()
    finally:
        if 'dns' in _shared:
            _shared['dns'].stop()
        shutil.rmtree(CA_DIR, ignore_errors=True)
    sys.exit(rc)


if __name__ == '__main__':
    main()
