#!/usr/bin/python3
# mod_muc (XEP-0045 on conference.<domain>): disco, reserved and instant
# rooms, the configuration form, presence and status codes, groupchat
# reflection with stanza-id/occupant-id, private messages, subject, history
# limits, nick conflicts and changes, every refusal (outcast, members-only,
# password, max occupants, visitor in a moderated room, non-owner configure
# and destroy), kick/ban/voice and the permission rules, member lists,
# mediated invitations to an offline user, XEP-0249 pass-through, destroy,
# MUC MAM, XEP-0425 moderation (broadcast and archive tombstone), XEP-0410
# self-ping, the room vCard, persistence across a restart, and a
# Conversations-style private group mixing raw, libstrophe (scn_runner)
# and slixmpp (muc_slix.py) clients.

import base64
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, stanza_error, tostr  # noqa: E402

NS_CLIENT = pvtest.NS_CLIENT
NS_MUC = 'http://jabber.org/protocol/muc'
NS_USER = NS_MUC + '#user'
NS_ADMIN = NS_MUC + '#admin'
NS_OWNER = NS_MUC + '#owner'
NS_DATA = 'jabber:x:data'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_ITEMS = 'http://jabber.org/protocol/disco#items'
NS_SID = 'urn:xmpp:sid:0'
NS_OID = 'urn:xmpp:occupant-id:0'
NS_DELAY = 'urn:xmpp:delay'
NS_MAM = 'urn:xmpp:mam:2'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_FWD = 'urn:xmpp:forward:0'
NS_MOD1 = 'urn:xmpp:message-moderate:1'
NS_RETRACT1 = 'urn:xmpp:message-retract:1'
NS_PING = 'urn:xmpp:ping'
IQ = '{%s}iq' % NS_CLIENT
MSG = '{%s}message' % NS_CLIENT
PRES = '{%s}presence' % NS_CLIENT
BODY = '{%s}body' % NS_CLIENT
MODULES = ['disco', 'ping', 'roster', 'presence', 'offline', 'vcard', 'muc']
NAMES = ('alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'mallory',
         'olga', 'pete', 'quinn')
USERS = {u: u + '-muc-pw' for u in NAMES}
ROOMCONFIG = NS_MUC + '#roomconfig'

suite = pvtest.Suite('muc')
_ids = itertools.count(1)


def get(c, pred, timeout=None, what='element'):
    """Like RawClient.recv_until, but what does not match stays queued
    for later waits (a subject may arrive before an IQ result)."""
    timeout = c.timeout if timeout is None else timeout
    deadline = time.monotonic() + timeout
    skipped = []
    try:
        while True:
            left = deadline - time.monotonic()
            try:
                el = c.recv(max(left, 0))
            except TimeoutError:
                raise pvtest.TestFailure(
                    'no %s within %.1fs; received instead: %s' %
                    (what, timeout, [tostr(e) for e in skipped] or
                     'nothing'))
            if pred(el):
                return el
            skipped.append(el)
    finally:
        c.pending[0:0] = skipped


def iq(c, xml, timeout=None):
    iq_id = ET.fromstring(xml).get('id')
    c.send(xml)
    return get(c, lambda e: e.tag == IQ and e.get('id') == iq_id, timeout,
               what='answer to iq %s' % iq_id)


def server():
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('mod_muc and friends not built')
    return suite.shared_server(users=USERS, modules=MODULES,
                               muc_ghost_check='1s')


def svc(srv):
    return 'conference.' + srv.domain


def room_jid(srv, name):
    return '%s@%s' % (name, svc(srv))


def nid(prefix='q'):
    return '%s%d' % (prefix, next(_ids))


def online(srv, user, res='r'):
    c = srv.login(user, resource=res)
    c.send('<presence/>')
    return c


def codes(el):
    x = el.find('{%s}x' % NS_USER)
    if x is None:
        return set()
    return {s.get('code') for s in x.findall('{%s}status' % NS_USER)}


def item(el):
    x = el.find('{%s}x' % NS_USER)
    return x.find('{%s}item' % NS_USER) if x is not None else None


def is_pres_from(frm, typ=None):
    return lambda e: e.tag == PRES and e.get('from') == frm and \
        e.get('type') == typ


def join(c, room, nick, x='', history=None):
    """Joins; returns (self-presence, everything received before it)."""
    hist = history or ''
    c.send("<presence to='%s/%s'><x xmlns='%s'>%s%s</x></presence>" %
           (room, nick, NS_MUC, x, hist))
    before = []

    def pred(e):
        if e.tag == PRES and e.get('from') == '%s/%s' % (room, nick) and \
                (e.get('type') == 'error' or '110' in codes(e)):
            return True
        before.append(e)
        return False
    el = get(c, pred, what='self-presence from %s/%s' % (room, nick))
    return el, before


def join_ok(c, room, nick, **kw):
    el, before = join(c, room, nick, **kw)
    check(el.get('type') is None, 'join %s as %s refused: %s' %
          (room, nick, tostr(el)))
    return el, before


def join_refused(c, room, nick, **kw):
    el, _ = join(c, room, nick, **kw)
    check_eq(el.get('type'), 'error', 'presence type of a refused join')
    return stanza_error(el)


def wait_subject(c, room):
    return get(c, lambda e: e.tag == MSG and
                        e.find('{%s}subject' % NS_CLIENT) is not None and
                        e.get('from', '').startswith(room),
                        what='subject of %s' % room)


def form_xml(fields, typ='submit'):
    out = ["<x xmlns='%s' type='%s'><field var='FORM_TYPE'><value>%s"
           "</value></field>" % (NS_DATA, typ, ROOMCONFIG)]
    for k, v in fields.items():
        vals = v if isinstance(v, list) else [v]
        out.append("<field var='%s'>%s</field>" %
                   (k, ''.join('<value>%s</value>' % x for x in vals)))
    out.append('</x>')
    return ''.join(out)


def configure(c, room, fields):
    return iq(c, "<iq type='set' id='%s' to='%s'><query xmlns='%s'>%s"
                "</query></iq>" % (nid('cfg'), room, NS_OWNER,
                                   form_xml(fields)))


def create(c, room, nick, fields=None):
    """Creates a reserved room, checks 201, configures it."""
    el, _ = join_ok(c, room, nick)
    check('201' in codes(el), 'no status 201 on creation: %s' % tostr(el))
    r = configure(c, room, fields or {})
    check_eq(r.get('type'), 'result', 'configuration of %s: %s' %
             (room, tostr(r)))
    wait_subject(c, room)
    return el


def admin_set(c, room, items):
    xml = ''.join("<item %s/>" % ' '.join("%s='%s'" % kv
                                           for kv in i.items())
                  for i in items)
    return iq(c, "<iq type='set' id='%s' to='%s'><query xmlns='%s'>%s"
                "</query></iq>" % (nid('adm'), room, NS_ADMIN, xml))


def admin_get(c, room, attr):
    return iq(c, "<iq type='get' id='%s' to='%s'><query xmlns='%s'>"
                "<item %s/></query></iq>" % (nid('adg'), room, NS_ADMIN,
                                             attr))


def say(c, room, text):
    c.send("<message to='%s' type='groupchat' id='%s'><body>%s</body>"
           "</message>" % (room, nid('m'), text))


def wait_body(c, text, frm=None):
    return get(c, lambda e: e.tag == MSG and
                        e.findtext(BODY) == text and
                        (frm is None or e.get('from') == frm),
                        what='message %r' % text)


def iq_error(el):
    check_eq(el.get('type'), 'error', 'iq type: %s' % tostr(el))
    return stanza_error(el)[1]


def mam_query(c, room, extra=''):
    """Runs a MUC MAM query; returns (result messages, fin)."""
    qid = nid('mam')
    c.send("<iq type='set' id='%s' to='%s'><query xmlns='%s' queryid='%s'>"
           "%s</query></iq>" % (qid, room, NS_MAM, qid, extra))
    msgs = []

    def pred(e):
        if e.tag == MSG:
            r = e.find('{%s}result' % NS_MAM)
            if r is not None and r.get('queryid') == qid:
                msgs.append(e)
            return False
        return e.tag == IQ and e.get('id') == qid
    fin = get(c, pred, what='end of MAM query %s' % qid)
    return msgs, fin


def forwarded(m):
    return m.find('{%s}result/{%s}forwarded/{%s}message' %
                  (NS_MAM, NS_FWD, NS_CLIENT))


# --- tests ------------------------------------------------------------------

@suite.test
def disco():
    srv = server()
    a = online(srv, 'alice')
    r = iq(a, "<iq type='get' id='d1' to='%s'><query xmlns='%s'/></iq>" %
             (svc(srv), NS_INFO))
    q = r.find('{%s}query' % NS_INFO)
    ids = [(i.get('category'), i.get('type'))
           for i in q.findall('{%s}identity' % NS_INFO)]
    check(('conference', 'text') in ids, 'no conference/text identity')
    feats = [f.get('var') for f in q.findall('{%s}feature' % NS_INFO)]
    check(NS_MUC in feats, 'no muc feature: %s' % feats)
    r = iq(a, "<iq type='get' id='d2' to='%s'><query xmlns='%s'/></iq>" %
             (srv.domain, NS_ITEMS))
    items = [i.get('jid') for i in r.iter('{%s}item' % NS_ITEMS)]
    check(svc(srv) in items, 'vhost disco#items lacks %s: %s' %
          (svc(srv), items))
    a.close()


@suite.test
def reserved_room_and_config():
    srv = server()
    room = room_jid(srv, 'reserved')
    a, b = online(srv, 'alice'), online(srv, 'bob')
    el, _ = join_ok(a, room, 'Alice')
    check({'110', '201'} <= codes(el), 'codes on creation: %s' % codes(el))
    check_eq(item(el).get('affiliation'), 'owner', 'creator affiliation')
    check_eq(item(el).get('role'), 'moderator', 'creator role')
    # locked until configured
    check_eq(join_refused(b, room, 'Bob'), ('cancel', 'item-not-found'),
             'join of a locked room')
    r = iq(a, "<iq type='get' id='cf1' to='%s'><query xmlns='%s'/></iq>" %
             (room, NS_OWNER))
    vars_ = [f.get('var') for f in r.iter('{%s}field' % NS_DATA)]
    for v in ('roomname', 'roomdesc', 'persistentroom', 'publicroom',
              'membersonly', 'moderatedroom', 'passwordprotectedroom',
              'roomsecret', 'maxusers', 'whois', 'historylength',
              'allowinvites', 'changesubject', 'allowpm',
              'getmemberlist'):
        check('muc#roomconfig_' + v in vars_, 'form lacks %s' % v)
    r = configure(a, room, {'muc#roomconfig_roomname': 'Reserved Room',
                            'muc#roomconfig_roomdesc': 'for tests',
                            'muc#roomconfig_whois': 'anyone',
                            'muc#roomconfig_maxusers': 'bogus'})
    check_eq(iq_error(r), 'not-acceptable', 'bad maxusers value')
    r = configure(a, room, {'muc#roomconfig_roomname': 'Reserved Room',
                            'muc#roomconfig_roomdesc': 'for tests',
                            'muc#roomconfig_whois': 'anyone'})
    check_eq(r.get('type'), 'result', 'config submit')
    wait_subject(a, room)
    el, before = join_ok(b, room, 'Bob')
    check('100' in codes(el), 'non-anonymous room: no 100 for the joiner')
    check_eq(item(el).get('role'), 'participant', 'joiner role')
    others = [e for e in before if e.tag == PRES]
    check(any(e.get('from') == room + '/Alice' and
              item(e).get('jid', '').startswith('alice@') for e in others),
          'joiner did not get the owner presence with jid first')
    # the owner sees bob's presence with jid
    p = get(a, is_pres_from(room + '/Bob'), what='bob presence')
    check(item(p).get('jid', '').startswith('bob@'), 'jid hidden in '
          'non-anonymous room')
    check(p.find('{%s}occupant-id' % NS_OID) is not None,
          'no occupant-id on presence')
    # room disco and listing
    r = iq(b, "<iq type='get' id='ri' to='%s'><query xmlns='%s'/></iq>" %
             (room, NS_INFO))
    feats = [f.get('var') for f in r.iter('{%s}feature' % NS_INFO)]
    for f in (NS_MUC, 'muc_nonanonymous', 'muc_temporary', 'muc_open',
              'muc_unmoderated', 'muc_unsecured', NS_MAM, NS_OID):
        check(f in feats, 'room disco lacks %s' % f)
    fvals = {f.get('var'): f.findtext('{%s}value' % NS_DATA)
             for f in r.iter('{%s}field' % NS_DATA)}
    check_eq(fvals.get('FORM_TYPE'), NS_MUC + '#roominfo', 'roominfo form')
    check_eq(fvals.get('muc#roominfo_description'), 'for tests',
             'roominfo description')
    check_eq(fvals.get('muc#roominfo_occupants'), '2', 'occupant count')
    r = iq(b, "<iq type='get' id='li' to='%s'><query xmlns='%s'/></iq>" %
             (svc(srv), NS_ITEMS))
    names = {i.get('jid'): i.get('name')
             for i in r.iter('{%s}item' % NS_ITEMS)}
    check_eq(names.get(room), 'Reserved Room', 'room in the listing')
    # non-owner cannot configure or destroy
    r = iq(b, "<iq type='get' id='cf2' to='%s'><query xmlns='%s'/></iq>" %
             (room, NS_OWNER))
    check_eq(iq_error(r), 'forbidden', 'non-owner config get')
    r = configure(b, room, {'muc#roomconfig_roomname': 'pwned'})
    check_eq(iq_error(r), 'forbidden', 'non-owner config set')
    r = iq(b, "<iq type='set' id='ds1' to='%s'><query xmlns='%s'><destroy/>"
             "</query></iq>" % (room, NS_OWNER))
    check_eq(iq_error(r), 'forbidden', 'non-owner destroy')
    # temporary room: vanishes with its last occupant
    b.send("<presence type='unavailable' to='%s/Bob'/>" % room)
    el = get(b, is_pres_from(room + '/Bob', 'unavailable'))
    check('110' in codes(el), 'no 110 on own leave')
    a.send("<presence type='unavailable' to='%s/Alice'/>" % room)
    get(a, is_pres_from(room + '/Alice', 'unavailable'))
    r = iq(a, "<iq type='get' id='ri2' to='%s'><query xmlns='%s'/></iq>" %
             (room, NS_INFO))
    check_eq(iq_error(r), 'item-not-found', 'temporary room after leave')
    a.close()
    b.close()


@suite.test
def instant_room_messages_pm_subject():
    srv = server()
    room = room_jid(srv, 'chat')
    a, b = online(srv, 'alice'), online(srv, 'bob')
    join_ok(a, room, 'Alice')
    r = iq(a, "<iq type='set' id='inst' to='%s'><query xmlns='%s'>"
             "<x xmlns='%s' type='submit'/></query></iq>" %
             (room, NS_OWNER, NS_DATA))
    check_eq(r.get('type'), 'result', 'instant room')
    wait_subject(a, room)
    join_ok(b, room, 'Bob')
    wait_subject(b, room)
    get(a, is_pres_from(room + '/Bob'))
    # groupchat reflected to all, the sender included
    say(b, room, 'hello room')
    ma = wait_body(a, 'hello room', room + '/Bob')
    mb = wait_body(b, 'hello room', room + '/Bob')
    sid = ma.find('{%s}stanza-id' % NS_SID)
    check(sid is not None and sid.get('by') == room, 'no stanza-id by room')
    check_eq(mb.find('{%s}stanza-id' % NS_SID).get('id'), sid.get('id'),
             'same stanza-id for everyone')
    oid_a = ma.find('{%s}occupant-id' % NS_OID).get('id')
    check(oid_a, 'no occupant-id')
    # a spoofed stanza-id/occupant-id is replaced
    b.send("<message to='%s' type='groupchat'><body>spoof</body>"
           "<stanza-id xmlns='%s' by='%s' id='fake'/>"
           "<occupant-id xmlns='%s' id='fake'/></message>" %
           (room, NS_SID, room, NS_OID))
    m = wait_body(a, 'spoof')
    check([s.get('id') for s in m.findall('{%s}stanza-id' % NS_SID)
           if s.get('by') == room] != ['fake'], 'spoofed stanza-id kept')
    check_eq([o.get('id') for o in m.findall('{%s}occupant-id' % NS_OID)],
             [oid_a], 'occupant-id stable and not spoofable')
    # private message
    b.send("<message to='%s/Alice' type='chat'><body>psst</body></message>"
           % room)
    pm = wait_body(a, 'psst')
    check_eq(pm.get('from'), room + '/Bob', 'pm from')
    check(pm.find('{%s}x' % NS_USER) is not None, 'pm without muc#user x')
    b.send("<message to='%s/Nobody' type='chat' id='pm2'><body>x</body>"
           "</message>" % room)
    e = get(b, lambda e: e.tag == MSG and e.get('type') == 'error')
    check_eq(stanza_error(e)[1], 'item-not-found', 'pm to unknown nick')
    # subject: participants may not change it by default
    b.send("<message to='%s' type='groupchat' id='s1'><subject>mine"
           "</subject></message>" % room)
    e = get(b, lambda e: e.tag == MSG and e.get('type') == 'error')
    check_eq(stanza_error(e)[1], 'forbidden', 'subject by participant')
    a.send("<message to='%s' type='groupchat'><subject>Topic 1</subject>"
           "</message>" % room)
    s = get(b, lambda e: e.tag == MSG and
                     e.findtext('{%s}subject' % NS_CLIENT) == 'Topic 1')
    check_eq(s.get('from'), room + '/Alice', 'subject from')
    # nick conflict, nick change (303)
    c = online(srv, 'carol')
    check_eq(join_refused(c, room, 'Bob'), ('cancel', 'conflict'),
             'nick conflict')
    b.send("<presence to='%s/Robert'/>" % room)
    un = get(a, is_pres_from(room + '/Bob', 'unavailable'))
    check('303' in codes(un) and item(un).get('nick') == 'Robert',
          'nick change: %s' % tostr(un))
    get(a, is_pres_from(room + '/Robert'))
    # non-occupant cannot send groupchat
    c.send("<message to='%s' type='groupchat' id='no'><body>x</body>"
           "</message>" % room)
    e = get(c, lambda e: e.tag == MSG and e.get('type') == 'error')
    check_eq(stanza_error(e)[1], 'not-acceptable', 'non-occupant message')
    # history: carol asks for the last 2 stanzas
    for i in range(4):
        say(a, room, 'hist %d' % i)
    wait_body(b, 'hist 3')
    _, before = join_ok(c, room, 'Carol',
                        history="<history maxstanzas='2'/>")
    hist = []
    while True:
        e = c.recv()
        if e.tag == MSG and e.find('{%s}subject' % NS_CLIENT) is not None:
            check_eq(e.findtext('{%s}subject' % NS_CLIENT), 'Topic 1',
                     'subject after history')
            break
        if e.tag == MSG and e.findtext(BODY):
            check(e.find('{%s}delay' % NS_DELAY) is not None,
                  'history without delay')
            hist.append(e.findtext(BODY))
    check_eq(hist, ['hist 2', 'hist 3'], 'history with maxstanzas=2')
    c.send("<presence type='unavailable' to='%s/Carol'/>" % room)
    get(c, is_pres_from(room + '/Carol', 'unavailable'))
    _, before = join_ok(c, room, 'Carol', history="<history maxchars='0'/>")
    e = get(c, lambda e: e.tag == MSG)
    check(e.find('{%s}subject' % NS_CLIENT) is not None,
          'maxchars=0 still sent history: %s' % tostr(e))
    # self-ping (XEP-0410)
    r = iq(c, "<iq type='get' id='sp1' to='%s/Carol'><ping xmlns='%s'/>"
             "</iq>" % (room, NS_PING))
    check_eq(r.get('type'), 'result', 'self-ping while joined')
    d = online(srv, 'dave')
    r = iq(d, "<iq type='get' id='sp2' to='%s/Carol'><ping xmlns='%s'/>"
             "</iq>" % (room, NS_PING))
    check_eq(iq_error(r), 'not-acceptable', 'self-ping while not joined')
    for x in (a, b, c, d):
        x.close()


@suite.test
def refusals():
    srv = server()
    room = room_jid(srv, 'guarded')
    a = online(srv, 'alice')
    create(a, room, 'Owner', {'muc#roomconfig_passwordprotectedroom': '1',
                              'muc#roomconfig_roomsecret': 'sesame',
                              'muc#roomconfig_maxusers': '10'})
    m = online(srv, 'mallory')
    check_eq(join_refused(m, room, 'M'), ('auth', 'not-authorized'),
             'no password')
    check_eq(join_refused(m, room, 'M', x='<password>wrong</password>'),
             ('auth', 'not-authorized'), 'wrong password')
    join_ok(m, room, 'M', x='<password>sesame</password>')
    # ban mallory: kicked with 301 and refused afterwards
    r = admin_set(a, room, [{'jid': 'mallory@' + srv.domain,
                             'affiliation': 'outcast'}])
    check_eq(r.get('type'), 'result', 'ban')
    el = get(m, is_pres_from(room + '/M', 'unavailable'))
    check({'301', '110'} <= codes(el), 'ban codes %s' % codes(el))
    check_eq(join_refused(m, room, 'M', x='<password>sesame</password>'),
             ('auth', 'forbidden'), 'outcast joins')
    r = admin_get(a, room, "affiliation='outcast'")
    check(['mallory@' + srv.domain] ==
          [i.get('jid') for i in r.iter('{%s}item' % NS_ADMIN)],
          'outcast list: %s' % tostr(r))
    # max occupants
    configure(a, room, {'muc#roomconfig_passwordprotectedroom': '0',
                        'muc#roomconfig_maxusers': '2'})
    b, c = online(srv, 'bob'), online(srv, 'carol')
    join_ok(b, room, 'B')
    check_eq(join_refused(c, room, 'C'), ('wait', 'service-unavailable'),
             'room full')
    # members-only: bob (inside, not a member) is removed with 322
    configure(a, room, {'muc#roomconfig_maxusers': '0',
                        'muc#roomconfig_membersonly': '1'})
    el = get(b, is_pres_from(room + '/B', 'unavailable'))
    check('322' in codes(el), 'members-only removal: %s' % codes(el))
    check_eq(join_refused(c, room, 'C'), ('auth', 'registration-required'),
             'non-member joins members-only')
    # moderated: a visitor cannot speak
    configure(a, room, {'muc#roomconfig_membersonly': '0',
                        'muc#roomconfig_moderatedroom': '1'})
    el, _ = join_ok(c, room, 'C')
    check_eq(item(el).get('role'), 'visitor', 'role in moderated room')
    c.send("<message to='%s' type='groupchat' id='v1'><body>hi</body>"
           "</message>" % room)
    e = get(c, lambda e: e.tag == MSG and e.get('type') == 'error')
    check_eq(stanza_error(e)[1], 'forbidden', 'visitor speaks')
    # voice granted, then she speaks
    r = admin_set(a, room, [{'nick': 'C', 'role': 'participant'}])
    check_eq(r.get('type'), 'result', 'grant voice')
    say(c, room, 'now I can')
    wait_body(a, 'now I can')
    for x in (a, b, c, m):
        x.close()


@suite.test
def roles_and_affiliations():
    srv = server()
    room = room_jid(srv, 'roles')
    a = online(srv, 'alice')
    create(a, room, 'Owner')
    b, c, d = online(srv, 'bob'), online(srv, 'carol'), online(srv, 'dave')
    join_ok(b, room, 'Bob')
    join_ok(c, room, 'Carol')
    join_ok(d, room, 'Dave')
    # a participant cannot kick
    r = admin_set(c, room, [{'nick': 'Dave', 'role': 'none'}])
    check_eq(iq_error(r), 'forbidden', 'participant kicks')
    # bob becomes admin -> moderator
    r = admin_set(a, room, [{'jid': 'bob@' + srv.domain,
                             'affiliation': 'admin'}])
    check_eq(r.get('type'), 'result', 'grant admin')
    p = get(c, lambda e: e.tag == PRES and
                     e.get('from') == room + '/Bob' and
                     item(e).get('role') == 'moderator')
    check_eq(item(p).get('affiliation'), 'admin', 'admin affiliation')
    # an admin may not make owners or touch owners
    r = admin_set(b, room, [{'jid': 'carol@' + srv.domain,
                             'affiliation': 'owner'}])
    check_eq(iq_error(r), 'forbidden', 'admin grants owner')
    r = admin_set(b, room, [{'jid': 'alice@' + srv.domain,
                             'affiliation': 'none'}])
    check_eq(iq_error(r), 'forbidden', 'admin demotes owner')
    # a moderator may not kick an owner
    r = admin_set(b, room, [{'nick': 'Owner', 'role': 'none'}])
    check_eq(iq_error(r), 'not-allowed', 'kick of an owner')
    # the last owner cannot leave ownership
    r = admin_set(a, room, [{'jid': 'alice@' + srv.domain,
                             'affiliation': 'member'}])
    check_eq(iq_error(r), 'conflict', 'removing the last owner')
    # membership and member list
    r = admin_set(b, room, [{'jid': 'carol@' + srv.domain,
                             'affiliation': 'member'}])
    check_eq(r.get('type'), 'result', 'admin grants member')
    r = admin_get(c, room, "affiliation='member'")
    check_eq([i.get('jid') for i in r.iter('{%s}item' % NS_ADMIN)],
             ['carol@' + srv.domain], 'member list')
    r = admin_get(c, room, "affiliation='admin'")
    check_eq(iq_error(r), 'forbidden', 'participant reads admin list')
    r = admin_get(b, room, "role='participant'")
    nicks = sorted(i.get('nick') for i in r.iter('{%s}item' % NS_ADMIN))
    check_eq(nicks, ['Carol', 'Dave'], 'participant list')
    # moderator grants and revokes voice and kicks with 307
    r = admin_set(b, room, [{'nick': 'Dave', 'role': 'visitor'}])
    check_eq(r.get('type'), 'result', 'revoke voice')
    p = get(d, lambda e: e.tag == PRES and
                     e.get('from') == room + '/Dave' and
                     item(e).get('role') == 'visitor')
    r = admin_set(b, room, [{'nick': 'Dave', 'role': 'none'}])
    check_eq(r.get('type'), 'result', 'kick')
    el = get(d, is_pres_from(room + '/Dave', 'unavailable'))
    check({'307', '110'} <= codes(el), 'kick codes %s' % codes(el))
    actor = item(el).find('{%s}actor' % NS_USER)
    check(actor is not None and actor.get('nick') == 'Bob', 'kick actor')
    el = get(c, is_pres_from(room + '/Dave', 'unavailable'))
    check('307' in codes(el), 'others see the kick')
    # a moderator who is not admin cannot grant moderator
    r = admin_set(a, room, [{'nick': 'Carol', 'role': 'moderator'}])
    check_eq(r.get('type'), 'result', 'owner grants moderator')
    r = admin_set(c, room, [{'nick': 'Bob', 'role': 'participant'}])
    check_eq(iq_error(r), 'forbidden', 'moderator revokes moderator')
    for x in (a, b, c, d):
        x.close()


@suite.test
def invitations_and_destroy():
    srv = server()
    room = room_jid(srv, 'family')
    a = online(srv, 'alice')
    create(a, room, 'Mum', {'muc#roomconfig_membersonly': '1',
                            'muc#roomconfig_persistentroom': '1',
                            'muc#roomconfig_allowinvites': '0'})
    # erin is offline: the invitation waits in offline storage
    a.send("<message to='%s' id='inv1'><x xmlns='%s'><invite to='erin@%s'>"
           "<reason>dinner</reason></invite></x></message>" %
           (room, NS_USER, srv.domain))
    r = admin_get(a, room, "affiliation='member'")
    check('erin@' + srv.domain in [i.get('jid') for i in
                                   r.iter('{%s}item' % NS_ADMIN)],
          'invitee not made member: %s' % tostr(r))
    e = srv.login('erin', resource='phone')
    e.send('<presence/>')
    inv = get(e, lambda x: x.tag == MSG and
                       x.find('{%s}x/{%s}invite' % (NS_USER, NS_USER))
                       is not None, what='invitation')
    check_eq(inv.get('from'), room, 'invitation from')
    check_eq(inv.find('{%s}x/{%s}invite' % (NS_USER, NS_USER)).get('from'),
             'alice@' + srv.domain, 'inviter')
    join_ok(e, room, 'Erin')
    # a member may not invite when allowinvites is off
    e.send("<message to='%s' id='inv2'><x xmlns='%s'><invite to='frank@%s'"
           "/></x></message>" % (room, NS_USER, srv.domain))
    err = get(e, lambda x: x.tag == MSG and x.get('type') == 'error')
    check_eq(stanza_error(err)[1], 'forbidden', 'member invites')
    # XEP-0249 direct invitation: passes untouched between users
    f = online(srv, 'frank')
    e.send("<message to='frank@%s'><x xmlns='jabber:x:conference' jid='%s'"
           " reason='come'/></message>" % (srv.domain, room))
    m = get(f, lambda x: x.tag == MSG and
                     x.find('{jabber:x:conference}x') is not None)
    check_eq(m.find('{jabber:x:conference}x').get('jid'), room,
             'direct invitation')
    # destroy with reason and alternate venue
    get(a, is_pres_from(room + '/Erin'))
    r = iq(a, "<iq type='set' id='dst' to='%s'><query xmlns='%s'>"
             "<destroy jid='new@%s'><reason>moved</reason></destroy>"
             "</query></iq>" % (room, NS_OWNER, svc(srv)))
    check_eq(r.get('type'), 'result', 'destroy')
    el = get(e, is_pres_from(room + '/Erin', 'unavailable'))
    d = el.find('{%s}x/{%s}destroy' % (NS_USER, NS_USER))
    check(d is not None and d.get('jid') == 'new@' + svc(srv) and
          d.findtext('{%s}reason' % NS_USER) == 'moved',
          'destroy presence: %s' % tostr(el))
    r = iq(a, "<iq type='get' id='gone' to='%s'><query xmlns='%s'/></iq>" %
             (room, NS_INFO))
    check_eq(iq_error(r), 'item-not-found', 'destroyed room')
    keys = pvtest.store_keys(srv, 'muc.rooms')
    if keys:
        check(not any(k[1] == 'family' for k in keys),
              'room row left after destroy: %s' % keys)
    for x in (a, e, f):
        x.close()


@suite.test
def mam_and_moderation():
    srv = server()
    room = room_jid(srv, 'archive')
    a, b, c = online(srv, 'alice'), online(srv, 'bob'), online(srv, 'carol')
    create(a, room, 'Owner')
    join_ok(b, room, 'Bob')
    for i in range(5):
        say(b, room, 'arch %d' % i)
    sids = [wait_body(a, 'arch %d' % i).find('{%s}stanza-id' % NS_SID)
            .get('id') for i in range(5)]
    # anyone may read an open room's archive (carol is not joined)
    msgs, fin = mam_query(c, room)
    check_eq(fin.get('type'), 'result', 'MAM query')
    bodies = [forwarded(m).findtext(BODY) for m in msgs]
    check_eq(bodies, ['arch %d' % i for i in range(5)], 'MUC MAM bodies')
    check_eq([m.find('{%s}result' % NS_MAM).get('id') for m in msgs], sids,
             'MAM ids are the stanza-ids')
    check_eq(forwarded(msgs[0]).get('from'), room + '/Bob',
             'archived from')
    check_eq(msgs[0].get('from'), room, 'result message from the room')
    # paging
    msgs, fin = mam_query(c, room, "<set xmlns='%s'><max>2</max>"
                          "<before/></set>" % NS_RSM)
    check_eq([forwarded(m).findtext(BODY) for m in msgs],
             ['arch 3', 'arch 4'], 'last page')
    check(fin.find('{%s}fin' % NS_MAM).get('complete') != 'true',
          'last page of 5 with max 2 is not complete')
    # moderation: a participant may not
    r = iq(b, "<iq type='set' id='mod0' to='%s'><moderate xmlns='%s' id='%s'>"
             "<retract xmlns='%s'/></moderate></iq>" %
             (room, NS_MOD1, sids[1], NS_RETRACT1))
    check_eq(iq_error(r), 'forbidden', 'participant moderates')
    r = iq(a, "<iq type='set' id='mod1' to='%s'><moderate xmlns='%s' id='%s'>"
             "<retract xmlns='%s'/><reason>spam</reason></moderate></iq>" %
             (room, NS_MOD1, sids[1], NS_RETRACT1))
    check_eq(r.get('type'), 'result', 'moderation')
    for x in (a, b):
        m = get(x, lambda e: e.tag == MSG and
                         e.find('{%s}retract' % NS_RETRACT1) is not None,
                         what='retraction')
        rt = m.find('{%s}retract' % NS_RETRACT1)
        check_eq(rt.get('id'), sids[1], 'retracted id')
        check_eq(rt.find('{%s}moderated' % NS_MOD1).get('by'),
                 room + '/Owner', 'moderated by')
    msgs, _ = mam_query(c, room)
    byid = {m.find('{%s}result' % NS_MAM).get('id'): forwarded(m)
            for m in msgs}
    tomb = byid.get(sids[1])
    check(tomb is not None and tomb.findtext(BODY) is None and
          tomb.find('{%s}retracted' % NS_RETRACT1) is not None,
          'archive still has the retracted text: %s' %
          (tostr(tomb) if tomb is not None else None))
    check_eq(byid[sids[2]].findtext(BODY), 'arch 2', 'neighbour intact')
    check(any(m.find('{%s}retract' % NS_RETRACT1) is not None
              for m in byid.values()), 'retraction itself not archived')
    r = iq(a, "<iq type='set' id='mod2' to='%s'><moderate xmlns='%s' "
             "id='nope'><retract xmlns='%s'/></moderate></iq>" %
             (room, NS_MOD1, NS_RETRACT1))
    check_eq(iq_error(r), 'item-not-found', 'moderating an unknown id')
    # room vCard: owner sets, anyone reads, others may not set
    r = iq(a, "<iq type='set' id='vc1' to='%s'><vCard xmlns='vcard-temp'>"
             "<FN>Archive room</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>"
             "iVBORw0KGgo=</BINVAL></PHOTO></vCard></iq>" % room)
    check_eq(r.get('type'), 'result', 'owner sets the room vCard')
    want = hashlib.sha1(base64.b64decode('iVBORw0KGgo=')).hexdigest()
    p = get(b, lambda e: e.tag == PRES and e.get('from') == room and
            e.find('{vcard-temp:x:update}x') is not None,
            what='XEP-0486 avatar presence')
    check_eq(p.findtext('{vcard-temp:x:update}x/{vcard-temp:x:update}photo'),
             want, 'avatar hash in room presence')
    r = iq(c, "<iq type='get' id='ah' to='%s'><query xmlns='%s'/></iq>" %
           (room, NS_INFO))
    fvals = {f.get('var'): f.findtext('{%s}value' % NS_DATA)
             for f in r.iter('{%s}field' % NS_DATA)}
    check_eq(fvals.get('muc#roominfo_avatarhash'), want, 'roominfo hash')
    r = iq(c, "<iq type='get' id='vc2' to='%s'><vCard xmlns='vcard-temp'/>"
             "</iq>" % room)
    check_eq(r.findtext('{vcard-temp}vCard/{vcard-temp}FN'), 'Archive room',
             'room vCard')
    r = iq(b, "<iq type='set' id='vc3' to='%s'><vCard xmlns='vcard-temp'>"
             "<FN>x</FN></vCard></iq>" % room)
    check_eq(iq_error(r), 'forbidden', 'participant sets the room vCard')
    for x in (a, b, c):
        x.close()


def slix(srv, cfg):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'muc_slix.py')
    full = dict(host=srv.host('c2s'), port=srv.port('c2s'),
                domain=srv.domain, cafile=srv.cafile,
                timeout=15 * pvtest.time_factor())
    full.update(cfg)
    r = subprocess.run(['/usr/bin/python3', path, json.dumps(full)],
                       capture_output=True, text=True,
                       timeout=60 * pvtest.time_factor())
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pvtest.fail('muc_slix.py: exit %d\n%s%s' % (r.returncode, r.stdout,
                                                    r.stderr))
    check(r.returncode == 0, 'muc_slix.py failed: %s %s' % (out, r.stderr))
    return out


@suite.test
def private_group_restart_and_catch_up():
    """A Conversations-style private group (members-only, non-anonymous,
    persistent): alice creates and configures it and adds members; pete
    (libstrophe) and quinn (slixmpp) take part; olga, offline, catches up
    over MUC MAM; everything survives a restart."""
    srv = server()
    room = room_jid(srv, 'private')
    a = online(srv, 'alice')
    create(a, room, 'Alice', {'muc#roomconfig_membersonly': '1',
                              'muc#roomconfig_whois': 'anyone',
                              'muc#roomconfig_persistentroom': '1',
                              'muc#roomconfig_publicroom': '0',
                              'muc#roomconfig_roomname': 'Family'})
    r = admin_set(a, room, [{'jid': '%s@%s' % (u, srv.domain),
                             'affiliation': 'member'}
                            for u in ('pete', 'quinn', 'olga')])
    check_eq(r.get('type'), 'result', 'members added')
    # hidden room: not listed
    r = iq(a, "<iq type='get' id='lst' to='%s'><query xmlns='%s'/></iq>" %
             (svc(srv), NS_ITEMS))
    check(room not in [i.get('jid') for i in r.iter('{%s}item' % NS_ITEMS)],
          'hidden room listed')
    # pete, with libstrophe, joins, hears alice and speaks
    scn = """requires: tls muc
[client] pete jid=pete@${domain}/strophe password=%s

pete connects
pete sends:
    <presence/>
pete sends:
    <presence to='%s/Pete'><x xmlns='%s'/></presence>
pete receives:
    <presence from='%s/Pete'>
      <x xmlns='%s'><item affiliation='member' role='participant'/>
        <status code='110'/><status code='100'/></x>
    </presence>
pete receives:
    <message type='groupchat' from='%s'><subject/></message>
pete sends:
    <message to='%s' type='groupchat' id='strophe1'>
      <body>hello from libstrophe</body></message>
pete receives:
    <message type='groupchat' from='%s/Pete' id='strophe1'>
      <body>hello from libstrophe</body>
      <stanza-id xmlns='%s' by='%s' id='{any}'/>
    </message>
pete sends:
    <presence type='unavailable' to='%s/Pete'/>
pete receives:
    <presence type='unavailable' from='%s/Pete'/>
pete disconnects
""" % (USERS['pete'], room, NS_MUC, room, NS_USER, room, room, room,
       NS_SID, room, room, room)
    pvtest.run_scenario_text(srv, scn, 'xep0045_private_group_strophe')
    wait_body(a, 'hello from libstrophe', room + '/Pete')
    # quinn, with slixmpp, joins, reads the history and speaks
    out = slix(srv, {'user': 'quinn', 'password': USERS['quinn'],
                     'room': room, 'nick': 'Quinn',
                     'say': 'hello from slixmpp'})
    check('hello from libstrophe' in out['history'],
          'slixmpp did not get the history: %s' % out)
    check('hello from libstrophe' in out['mam'],
          'slixmpp MUC MAM: %s' % out)
    wait_body(a, 'hello from slixmpp', room + '/Quinn')
    say(a, room, 'before restart')
    wait_body(a, 'before restart')
    # a non-member is refused; restart keeps config, members and history
    m = online(srv, 'mallory')
    check_eq(join_refused(m, room, 'M'), ('auth', 'registration-required'),
             'non-member before restart')
    for x in (a, m):
        x.close()
    srv.restart()
    a = online(srv, 'alice')
    r = iq(a, "<iq type='get' id='ri' to='%s'><query xmlns='%s'/></iq>" %
             (room, NS_INFO))
    feats = [f.get('var') for f in r.iter('{%s}feature' % NS_INFO)]
    for f in ('muc_persistent', 'muc_membersonly', 'muc_nonanonymous',
              'muc_hidden'):
        check(f in feats, 'after restart the room lacks %s' % f)
    r = admin_get(a, room, "affiliation='member'")
    check_eq(sorted(i.get('jid') for i in r.iter('{%s}item' % NS_ADMIN)),
             sorted('%s@%s' % (u, srv.domain) for u in
                    ('olga', 'pete', 'quinn')), 'members after restart')
    m = online(srv, 'mallory')
    check_eq(join_refused(m, room, 'M'), ('auth', 'registration-required'),
             'non-member after restart')
    # olga was offline all along: MUC MAM catches her up (also from
    # outside the room), and the join history survived the restart
    o = online(srv, 'olga')
    msgs, fin = mam_query(o, room)
    check_eq(fin.get('type'), 'result', 'olga MAM')
    check_eq([forwarded(x).findtext(BODY) for x in msgs],
             ['hello from libstrophe', 'hello from slixmpp',
              'before restart'], 'olga catches up')
    msgs, fin = mam_query(m, room)
    check_eq((msgs, iq_error(fin)), ([], 'forbidden'),
             'non-member reads the archive')
    el, _ = join_ok(o, room, 'Olga', history="<history maxstanzas='1'/>")
    h = get(o, lambda e: e.tag == MSG and e.findtext(BODY))
    check_eq(h.findtext(BODY), 'before restart', 'join history after '
             'restart')
    check(h.find('{%s}delay' % NS_DELAY) is not None, 'history delay')
    for x in (a, m, o):
        x.close()


@suite.test
def multi_session_nick():
    """One account on two devices under the same nick is one occupant:
    both sessions get the room's traffic and private messages, the others
    see the nick leave only when the last session does; a kick removes
    both."""
    srv = server()
    room = room_jid(srv, 'devices')
    a = online(srv, 'alice')
    create(a, room, 'Owner')
    p1, p2 = online(srv, 'pete', 'phone'), online(srv, 'pete', 'desk')
    join_ok(p1, room, 'Pete')
    get(a, is_pres_from(room + '/Pete'))
    el, before = join_ok(p2, room, 'Pete')
    check(not any(e.tag == PRES and e.get('from') == room + '/Pete' and
                  '110' not in codes(e) for e in before),
          'second session listed its own nick as another occupant')
    get(p1, lambda e: e.tag == PRES and e.get('from') == room + '/Pete' and
        '110' in codes(e) and e.get('type') is None and
        item(e).get('jid', '').endswith('/desk'),
        what='first session told of the second')
    say(a, room, 'to both devices')
    wait_body(p1, 'to both devices')
    wait_body(p2, 'to both devices')
    a.send("<message to='%s/Pete' type='chat'><body>pm both</body>"
           "</message>" % room)
    wait_body(p1, 'pm both', room + '/Owner')
    wait_body(p2, 'pm both', room + '/Owner')
    say(p2, room, 'from the desk')
    wait_body(p1, 'from the desk', room + '/Pete')
    # one device leaves: only it hears; the owner still sees Pete
    p2.send("<presence type='unavailable' to='%s/Pete'/>" % room)
    el = get(p2, is_pres_from(room + '/Pete', 'unavailable'))
    check('110' in codes(el), 'leaving session gets 110')
    say(a, room, 'still there')
    wait_body(p1, 'still there')
    wait_body(a, 'still there')     # what came before is now in pending
    check(not any(e.tag == PRES and e.get('type') == 'unavailable' and
                  e.get('from') == room + '/Pete' for e in a.pending),
          'owner saw Pete leave while a session remains')
    # IQs to an occupant JID: relayed without revealing real JIDs; a vCard
    # request is answered by the occupant's server
    a.send("<iq type='get' id='fw1' to='%s/Pete'><time xmlns='urn:xmpp:time'"
           "/></iq>" % room)
    q = get(p1, lambda e: e.tag == IQ and e.get('id') == 'fw1',
            what='forwarded iq')
    check_eq(q.get('from'), room + '/Owner', 'forwarded iq from')
    p1.send("<iq type='result' id='fw1' to='%s/Owner'><time xmlns="
            "'urn:xmpp:time'><utc>2026-01-01T00:00:00Z</utc></time></iq>"
            % room)
    r = get(a, lambda e: e.tag == IQ and e.get('id') == 'fw1',
            what='relayed answer')
    check_eq((r.get('type'), r.get('from')), ('result', room + '/Pete'),
             'relayed answer')
    r = iq(p1, "<iq type='set' id='pvc'><vCard xmlns='vcard-temp'>"
           "<FN>Pete Phone</FN></vCard></iq>")
    check_eq(r.get('type'), 'result', 'pete sets his vCard')
    r = iq(a, "<iq type='get' id='ovc' to='%s/Pete'><vCard "
           "xmlns='vcard-temp'/></iq>" % room)
    check_eq(r.findtext('{vcard-temp}vCard/{vcard-temp}FN'), 'Pete Phone',
             'occupant vCard through the room')
    check(not any('pete@' in (e.get('from') or '') for e in [r]),
          'real JID leaked')
    # back on two devices, then a kick removes both
    join_ok(p2, room, 'Pete')
    r = admin_set(a, room, [{'nick': 'Pete', 'role': 'none'}])
    check_eq(r.get('type'), 'result', 'kick')
    for x in (p1, p2):
        el = get(x, is_pres_from(room + '/Pete', 'unavailable'))
        check({'307', '110'} <= codes(el), 'kick codes %s' % codes(el))
    get(a, is_pres_from(room + '/Pete', 'unavailable'), what='kick seen')
    for x in (a, p1, p2):
        x.close()


@suite.test
def ghost_and_remote_occupants():
    """An occupant whose client vanishes leaves the room (mod_presence's
    unavailable to directed-presence targets); a user of another server
    joins, talks, is refused and reads the archive over s2s."""
    srv = server()
    room = room_jid(srv, 'ghosts')
    a, g = online(srv, 'alice'), online(srv, 'frank')
    create(a, room, 'Alice')
    join_ok(g, room, 'Ghost')
    get(a, is_pres_from(room + '/Ghost'))
    g.close()
    el = get(a, is_pres_from(room + '/Ghost', 'unavailable'),
             what='unavailable of a vanished occupant')
    check('110' not in codes(el), 'others get no 110')
    # a client that joined without initial presence gets no unavailable
    # from mod_presence: the room's sweep removes it (333)
    h = srv.login('frank', resource='silent')
    join_ok(h, room, 'Silent')
    get(a, is_pres_from(room + '/Silent'))
    h.close()
    el = get(a, is_pres_from(room + '/Silent', 'unavailable'),
             timeout=5 * pvtest.time_factor(), what='sweep of a ghost')
    check('333' in codes(el), 'ghost removal codes %s' % codes(el))
    # SIGHUP: the new configuration generation starts with the stored
    # rooms only; occupants hear 332 and can rejoin at once
    srv.proc.send_signal(signal.SIGHUP)
    el = get(a, is_pres_from(room + '/Alice', 'unavailable'),
             what='332 on reload')
    check({'332', '110'} <= codes(el), 'reload codes %s' % codes(el))
    join_ok(a, room, 'Alice')
    a.close()
    # federation
    import s2s_helpers
    if pvtest.available_modules(['roster', 'presence', 'muc']) != \
            ['roster', 'presence', 'muc']:
        pvtest.skip('modules missing')
    ca = tempfile.mkdtemp(prefix='pvtest-muc-ca-')
    try:
        pvtest.make_ca(ca)
        da, db = 'muca.example', 'mucb.example'
        ia, ib = '127.0.0.45', '127.0.0.46'
        pw = 'muc-s2s-pw'
        pa = s2s_helpers.PalaverPeer(suite, da, ia, ca, {db: ib},
                                     {'alice': pw}, extra_modules=('muc',))
        pb = s2s_helpers.PalaverPeer(suite, db, ib, ca,
                                     {da: ia, 'conference.' + da: ia},
                                     {'bob': pw})
        pa.start()
        pb.start()
        room = 'fed@conference.' + da
        a = pa.login('alice', pw, resource='r')
        a.send('<presence/>')
        b = pb.login('bob', pw, resource='r')
        b.send('<presence/>')
        create(a, room, 'Alice')
        el, _ = join_ok(b, room, 'Bob')
        check_eq(item(el).get('role'), 'participant', 'remote role')
        get(a, is_pres_from(room + '/Bob'))
        say(b, room, 'over s2s')
        wait_body(a, 'over s2s', room + '/Bob')
        wait_body(b, 'over s2s', room + '/Bob')
        b2 = pb.login('bob', pw, resource='two')
        b2.send('<presence/>')
        check_eq(join_refused(b2, room, 'Alice'), ('cancel', 'conflict'),
                 'remote nick conflict')
        msgs, fin = mam_query(b, room)
        check_eq([forwarded(m).findtext(BODY) for m in msgs], ['over s2s'],
                 'remote MUC MAM')
        r = iq(b, "<iq type='get' id='rsp' to='%s/Bob'><ping xmlns='%s'/>"
               "</iq>" % (room, NS_PING))
        check_eq(r.get('type'), 'result', 'remote self-ping')
        for x in (a, b, b2):
            x.close()
    finally:
        shutil.rmtree(ca, ignore_errors=True)


if __name__ == '__main__':
    suite.main()
