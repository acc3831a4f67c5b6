#!/usr/bin/python3
# mod_mam (XEP-0313 urn:xmpp:mam:2 + #extended, XEP-0359 stanza-id,
# XEP-0059 paging): 10,000 archived messages paged both ways without gap
# or duplicate, every filter (with, start, end, before-id, after-id, ids),
# item-not-found, stanza-id on delivery equal to the archive id, forged
# stanza-ids stripped, re-routed ones kept, XEP-0334 no-store, chat states
# not archived, preferences (always/never/roster), metadata, form, restart,
# account deletion (rows gone) and retention.

import json
import os
import secrets
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, NS_CLIENT  # noqa: E402

NS_MAM = 'urn:xmpp:mam:2'
NS_SID = 'urn:xmpp:sid:0'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_FWD = 'urn:xmpp:forward:0'
NS_DELAY = 'urn:xmpp:delay'
NS_DATA = 'jabber:x:data'
NS_INFO = 'http://jabber.org/protocol/disco#info'

MODULES = pvtest.CORE_MODULES + ['roster', 'presence', 'offline', 'mam']
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw', 'carol': 'car0l-pw',
         'dave': 'd4ve-pw', 'erin': '3rin-pw', 'frank': 'fr4nk-pw',
         'gina': 'g1na-pw', 'hank': 'h4nk-pw', 'ivy': '1vy-pw',
         'jack': 'j4ck-pw'}
BULK = 10000
# a pipelined flood must not trip the per-connection limits
FAST = {'c2s_stanza_rate': 'off', 'c2s_rate_limit': 'off',
        'c2s_send_queue_max': '64M'}

suite = pvtest.Suite('mam')


def server(key='default', **kw):
    if pvtest.available_modules(['mam']) != ['mam']:
        pvtest.skip('mod_mam not built')
    cfg = dict(FAST)
    cfg.update(kw)
    return suite.shared_server(key, users=USERS, modules=MODULES, **cfg)


def login(srv, user, resource=None, presence=True):
    c = srv.login(user, resource=resource)
    if presence:
        c.send('<presence/>')
    return c


def is_msg(el, body=None):
    return el.tag == '{%s}message' % NS_CLIENT and (
        body is None or el.findtext('{%s}body' % NS_CLIENT) == body)


def send_chat(c, to, body, extra=''):
    c.send("<message type='chat' to='%s' id='%s'><body>%s</body>%s"
           "</message>" % (to, secrets.token_hex(4), body, extra))


def recv_body(c, body):
    return c.recv_until(lambda e: is_msg(e, body), what='message %s' % body)


def recv_bodies(c, want):
    """Waits for messages with each body of want, in any order."""
    left = set(want)
    while left:
        m = c.recv_until(lambda e: is_msg(e) and e.findtext(
            '{%s}body' % NS_CLIENT) in left, what='messages %s' % left)
        left.discard(m.findtext('{%s}body' % NS_CLIENT))


def stanza_ids(msg):
    return [(s.get('by'), s.get('id'))
            for s in msg.findall('{%s}stanza-id' % NS_SID)]


def query(c, fields=(), rsm=None, flip=False, to=None, expect_error=False):
    """Runs one MAM query; returns ([(id, stamp, message)], fin) or the
    error IQ when expect_error."""
    qid = 'q' + secrets.token_hex(4)
    iq_id = 'mq' + secrets.token_hex(4)
    x = ''
    if fields:
        x = ("<x xmlns='%s' type='submit'><field var='FORM_TYPE' "
             "type='hidden'><value>%s</value></field>" % (NS_DATA, NS_MAM))
        for var, vals in fields:
            if isinstance(vals, str):
                vals = [vals]
            x += "<field var='%s'>%s</field>" % (
                var, ''.join('<value>%s</value>' % v for v in vals))
        x += '</x>'
    s = ''
    if rsm is not None:
        s = "<set xmlns='%s'>" % NS_RSM
        for k, v in rsm.items():
            s += '<%s/>' % k if v is None else '<%s>%s</%s>' % (k, v, k)
        s += '</set>'
    c.send("<iq type='set' id='%s'%s><query xmlns='%s' queryid='%s'>%s%s%s"
           "</query></iq>" % (iq_id, " to='%s'" % to if to else '', NS_MAM,
                              qid, x, s, '<flip-page/>' if flip else ''))
    items = []
    while True:
        el = c.recv()
        if el.tag == '{%s}iq' % NS_CLIENT and el.get('id') == iq_id:
            if expect_error:
                check_eq(el.get('type'), 'error', 'query answer type')
                return el
            check(el.get('type') == 'result',
                  'query failed: %s' % pvtest.tostr(el))
            fin = el.find('{%s}fin' % NS_MAM)
            check(fin is not None, 'no <fin/>: %s' % pvtest.tostr(el))
            return items, fin
        if el.tag != '{%s}message' % NS_CLIENT:
            continue
        r = el.find('{%s}result' % NS_MAM)
        if r is None or r.get('queryid') != qid:
            continue
        fwd = r.find('{%s}forwarded' % NS_FWD)
        check(fwd is not None, 'result without forwarded')
        delay = fwd.find('{%s}delay' % NS_DELAY)
        msg = fwd.find('{%s}message' % NS_CLIENT)
        check(delay is not None and msg is not None,
              'forwarded lacks delay or message: %s' % pvtest.tostr(el))
        items.append((r.get('id'), delay.get('stamp'), msg))


def bodies(items):
    return [m.findtext('{%s}body' % NS_CLIENT) for _i, _s, m in items]


def fin_ids(fin):
    s = fin.find('{%s}set' % NS_RSM)
    check(s is not None, 'fin without RSM set')
    return s.findtext('{%s}first' % NS_RSM), s.findtext('{%s}last' % NS_RSM)


def archive_rows(srv, user):
    return [k for k in pvtest.store_keys(srv, 'mam.archive')
            if len(k) >= 2 and k[0] == srv.domain and k[1] == user]


# --------------------------------------------------------------------------

state = {}


@suite.test
def bulk_page_forward_and_backward():
    srv = server()
    a = login(srv, 'alice')
    b = login(srv, 'bob')
    got = []

    def drain():
        try:
            while True:
                el = b.recv(60 * pvtest.time_factor())
                if is_msg(el):
                    got.append(el)
                    if el.findtext('{%s}body' % NS_CLIENT) == \
                            'bulk-%d' % (BULK - 1):
                        return
        except Exception as e:      # noqa: BLE001
            got.append(e)

    t = threading.Thread(target=drain)
    t.start()
    t0 = time.monotonic()
    batch = []
    for i in range(BULK):
        batch.append("<message type='chat' to='bob@%s' id='b%d'>"
                     "<body>bulk-%d</body></message>" % (srv.domain, i, i))
        if len(batch) == 1000:
            a.send(''.join(batch))
            batch = []
    t.join(120 * pvtest.time_factor())
    check(not t.is_alive(), 'bob did not receive all %d messages' % BULK)
    check(got and not isinstance(got[-1], Exception),
          'receiving failed: %r' % (got[-1:],))
    check_eq(len(got), BULK, 'messages delivered')
    print('     %d messages sent and delivered in %.2fs' %
          (BULK, time.monotonic() - t0))
    # every delivered copy carries bob's stanza-id
    for el in (got[0], got[-1]):
        sids = stanza_ids(el)
        check_eq(len(sids), 1, 'stanza-ids on delivery')
        check_eq(sids[0][0], 'bob@%s' % srv.domain, 'stanza-id by')
    want = ['bulk-%d' % i for i in range(BULK)]

    # forward with <after/>: no gap, no duplicate, complete only at the end
    t0 = time.monotonic()
    fwd, after, pages = [], None, 0
    while True:
        rsm = {'max': 50}
        if after:
            rsm['after'] = after
        items, fin = query(b, rsm=rsm)
        pages += 1
        check(len(items) <= 50, 'page larger than max')
        fwd.extend(items)
        if fin.get('complete') == 'true':
            break
        check(items, 'empty page without complete')
        check_eq(fin_ids(fin), (items[0][0], items[-1][0]), 'first/last')
        after = items[-1][0]
        check(pages <= BULK // 50 + 1, 'paging does not end')
    t_fwd = time.monotonic() - t0
    check_eq(bodies(fwd), want, 'forward paging')
    ids = [i for i, _s, _m in fwd]
    check_eq(len(set(ids)), BULK, 'unique ids')
    # the delivered stanza-id is the archive id
    check_eq(stanza_ids(got[0])[0][1], ids[0], 'first stanza-id vs archive')
    check_eq(stanza_ids(got[-1])[0][1], ids[-1], 'last stanza-id vs archive')
    stamps = [s for _i, s, _m in fwd]
    check(stamps == sorted(stamps) and len(set(stamps)) == BULK,
          'stamps strictly increasing')

    # backward with <before/>: the same archive, newest page first, each
    # page in chronological order
    t0 = time.monotonic()
    back_pages, before = [], ''
    while True:
        items, fin = query(b, rsm={'max': 50, 'before': before or None})
        back_pages.append(items)
        if fin.get('complete') == 'true':
            break
        check(items, 'empty page without complete')
        before = items[0][0]
        check(len(back_pages) <= BULK // 50 + 1, 'paging does not end')
    t_back = time.monotonic() - t0
    back = [it for page in reversed(back_pages) for it in page]
    check_eq([i for i, _s, _m in back], ids, 'backward paging')

    # the latest 50 of the archive
    t0 = time.monotonic()
    n = 20
    for _ in range(n):
        items, fin = query(b, rsm={'max': 50, 'before': None})
    t_last = (time.monotonic() - t0) / n
    check_eq([i for i, _s, _m in items], ids[-50:], 'last page')
    check(fin.get('complete') != 'true', 'last page of 10000 is complete')
    print('     forward %d pages %.2fs, backward %.2fs, latest-50 query '
          '%.1f ms' % (pages, t_fwd, t_back, t_last * 1000))

    # the server caps max at mam_max_page (50 by default)
    items, fin = query(b, rsm={'max': 5000})
    check_eq(len(items), 50, 'page capped at mam_max_page')
    # sender's own archive has them too
    items, fin = query(a, rsm={'max': 3})
    check_eq(bodies(items), want[:3], "sender's archive")
    check_eq(items[0][2].get('to'), 'bob@%s' % srv.domain,
             "sender's archived to")
    # flip-page: same page, reversed order
    items, fin = query(b, rsm={'max': 10}, flip=True)
    check_eq(bodies(items), list(reversed(want[:10])), 'flip-page')
    state['bulk_ids'] = ids
    a.close()
    b.close()


@suite.test
def filters():
    srv = server()
    c = login(srv, 'carol')
    d1 = login(srv, 'dave', resource='d1')
    d2 = login(srv, 'dave', resource='d2')
    e = login(srv, 'erin')
    carol = 'carol@%s' % srv.domain
    seq = [(d1, 'f1'), (e, 'f2'), (d2, 'f3'), (c, 'f4'), (d1, 'f5'),
           (e, 'f6')]
    for who, body in seq:
        if who is c:
            send_chat(c, 'dave@%s' % srv.domain, body)
            recv_body(d1, body)
        else:
            send_chat(who, carol, body)
            recv_body(c, body)
    items, fin = query(c)
    check_eq(bodies(items), ['f1', 'f2', 'f3', 'f4', 'f5', 'f6'], 'all')
    check_eq(fin.get('complete'), 'true', 'complete')
    ids = [i for i, _s, _m in items]
    stamps = [s for _i, s, _m in items]

    items, _ = query(c, [('with', 'dave@%s' % srv.domain)])
    check_eq(bodies(items), ['f1', 'f3', 'f4', 'f5'], 'with bare')
    items, _ = query(c, [('with', 'dave@%s/d1' % srv.domain)])
    check_eq(bodies(items), ['f1', 'f5'], 'with full')
    items, _ = query(c, [('with', 'erin@%s' % srv.domain)])
    check_eq(bodies(items), ['f2', 'f6'], 'with erin')
    items, _ = query(c, [('with', 'nobody@%s' % srv.domain)])
    check_eq(items, [], 'with nobody')
    # with + paging: a filtered page is still complete only at the end
    items, fin = query(c, [('with', 'dave@%s' % srv.domain)],
                       rsm={'max': 2})
    check_eq(bodies(items), ['f1', 'f3'], 'with page 1')
    check(fin.get('complete') != 'true', 'with page 1 complete')
    items, fin = query(c, [('with', 'dave@%s' % srv.domain)],
                       rsm={'max': 2, 'after': items[-1][0]})
    check_eq(bodies(items), ['f4', 'f5'], 'with page 2')
    items, fin = query(c, [('with', 'dave@%s' % srv.domain)],
                       rsm={'max': 2, 'before': None})
    check_eq(bodies(items), ['f4', 'f5'], 'with last page')

    items, _ = query(c, [('start', stamps[2])])
    check_eq(bodies(items), ['f3', 'f4', 'f5', 'f6'], 'start')
    items, _ = query(c, [('end', stamps[1])])
    check_eq(bodies(items), ['f1', 'f2'], 'end')
    items, _ = query(c, [('start', stamps[1]), ('end', stamps[3])])
    check_eq(bodies(items), ['f2', 'f3', 'f4'], 'start+end')
    items, _ = query(c, [('start', '2000-01-01T00:00:00Z'),
                         ('end', '2000-01-02T00:00:00+02:00')])
    check_eq(items, [], 'old range')
    items, _ = query(c, [('after-id', ids[1])])
    check_eq(bodies(items), ['f3', 'f4', 'f5', 'f6'], 'after-id')
    items, _ = query(c, [('before-id', ids[3])])
    check_eq(bodies(items), ['f1', 'f2', 'f3'], 'before-id')
    items, _ = query(c, [('after-id', ids[1]), ('before-id', ids[4])])
    check_eq(bodies(items), ['f3', 'f4'], 'after-id+before-id')
    items, _ = query(c, [('ids', [ids[4], ids[0], 'no-such-id'])])
    check_eq(bodies(items), ['f1', 'f5'], 'ids')
    items, fin = query(c, rsm={'max': 2, 'after': ids[0]})
    check_eq(bodies(items), ['f2', 'f3'], 'rsm after')
    items, fin = query(c, rsm={'max': 2, 'before': ids[5]})
    check_eq(bodies(items), ['f4', 'f5'], 'rsm before')
    check(fin.get('complete') != 'true', 'rsm before complete')

    for kw in ({'rsm': {'after': 'bogus-id'}},
               {'rsm': {'before': 'bogus-id'}},
               {'fields': [('after-id', 'bogus-id')]},
               {'fields': [('before-id', 'bogus-id')]}):
        err = query(c, expect_error=True, **kw)
        check_eq(pvtest.stanza_error(err)[1], 'item-not-found',
                 'error for %r' % kw)
    err = query(c, [('frobnicate', 'x')], expect_error=True)
    check_eq(pvtest.stanza_error(err)[1], 'feature-not-implemented',
             'unknown field')
    err = query(c, [('start', 'yesterday')], expect_error=True)
    check_eq(pvtest.stanza_error(err)[1], 'bad-request', 'bad start')
    # someone else's archive
    err = query(d1, to=carol, expect_error=True)
    check_eq(pvtest.stanza_error(err)[1], 'forbidden', 'foreign archive')

    # metadata (#extended)
    r = c.iq("<iq type='get' id='md1'><metadata xmlns='%s'/></iq>" % NS_MAM)
    md = r.find('{%s}metadata' % NS_MAM)
    check(md is not None, 'no metadata: %s' % pvtest.tostr(r))
    check_eq(md.find('{%s}start' % NS_MAM).get('id'), ids[0], 'md start')
    check_eq(md.find('{%s}end' % NS_MAM).get('id'), ids[-1], 'md end')
    check_eq(md.find('{%s}end' % NS_MAM).get('timestamp'), stamps[-1],
             'md end stamp')
    r = d1.iq("<iq type='get' id='md2'><metadata xmlns='%s'/></iq>" % NS_MAM)
    check(r.find('{%s}metadata' % NS_MAM) is not None, 'dave metadata')
    # form discovery
    r = c.iq("<iq type='get' id='fm1'><query xmlns='%s'/></iq>" % NS_MAM)
    x = r.find('{%s}query/{%s}x' % (NS_MAM, NS_DATA))
    check(x is not None, 'no form: %s' % pvtest.tostr(r))
    vars_ = {f.get('var') for f in x.findall('{%s}field' % NS_DATA)}
    for v in ('FORM_TYPE', 'with', 'start', 'end', 'before-id', 'after-id',
              'ids'):
        check(v in vars_, 'form lacks %s' % v)
    # disco: the features are advertised on the account (XEP-0313 §7)
    r = c.iq("<iq type='get' id='di1' to='%s'><query xmlns='%s'/></iq>" %
             (c.jid.split('/')[0], NS_INFO))
    feats = {f.get('var') for f in r.iter('{%s}feature' % NS_INFO)}
    check(NS_MAM in feats and NS_MAM + '#extended' in feats,
          'disco features: %s' % sorted(feats))
    state['filters'] = ids
    for x in (c, d1, d2, e):
        x.close()


@suite.test
def stanza_id_rules():
    srv = server()
    f = login(srv, 'frank')
    g = login(srv, 'gina')
    frank = 'frank@%s' % srv.domain
    # forged stanza-id by the recipient: stripped, a real one added
    send_chat(g, frank, 'forged',
              "<stanza-id xmlns='%s' by='%s' id='forged-1'/>"
              "<stanza-id xmlns='%s' by='other@example.org' id='x1'/>"
              % (NS_SID, frank, NS_SID))
    m = recv_body(f, 'forged')
    sids = stanza_ids(m)
    check(('other@example.org', 'x1') in sids, 'foreign stanza-id kept')
    own = [i for by, i in sids if by == frank]
    check_eq(len(own), 1, 'own stanza-ids')
    check(own[0] != 'forged-1', 'forged stanza-id not stripped')
    items, _ = query(f)
    check_eq(bodies(items), ['forged'], 'archive after forged')
    check_eq(items[0][0], own[0], 'archive id = stanza-id')
    archived = stanza_ids(items[0][2])
    check(('frank@%s' % srv.domain, 'forged-1') not in archived,
          'forged stanza-id archived')
    # a stanza-id that IS in the archive: the message is being routed
    # again (XEP-0198): kept, and not archived twice
    send_chat(g, frank, 'again',
              "<stanza-id xmlns='%s' by='%s' id='%s'/>" % (NS_SID, frank,
                                                          own[0]))
    m = recv_body(f, 'again')
    check_eq(stanza_ids(m), [(frank, own[0])], 're-routed stanza-id')
    items, _ = query(f)
    check_eq(bodies(items), ['forged'], 'archive after re-route')
    # XEP-0334 hints and chat states
    send_chat(g, frank, 'nostore', "<no-store xmlns='urn:xmpp:hints'/>")
    m = recv_body(f, 'nostore')
    check_eq(stanza_ids(m), [], 'stanza-id on a no-store message')
    send_chat(g, frank, 'noperm',
              "<no-permanent-store xmlns='urn:xmpp:hints'/>")
    recv_body(f, 'noperm')
    g.send("<message type='chat' to='%s' id='cs1'><composing xmlns="
           "'http://jabber.org/protocol/chatstates'/></message>" % frank)
    f.recv_until(lambda e: is_msg(e) and e.find(
        '{http://jabber.org/protocol/chatstates}composing') is not None)
    # OMEMO without a body is archived; groupchat and headline are not
    g.send("<message type='chat' to='%s' id='om1'><encrypted xmlns="
           "'eu.siacs.conversations.axolotl'><header sid='1'/>"
           "</encrypted></message>" % frank)
    g.send("<message type='headline' to='%s' id='hl1'><body>head</body>"
           "</message>" % frank)
    send_chat(g, frank, 'last')
    recv_body(f, 'last')
    items, _ = query(f)
    check_eq(bodies(items), ['forged', None, 'last'], 'archived bodies')
    check(items[1][2].find('{eu.siacs.conversations.axolotl}encrypted')
          is not None, 'OMEMO message archived')
    items, _ = query(g)
    check_eq(bodies(items), ['forged', 'again', None, 'last'],
             "sender's archive")
    f.close()
    g.close()


def set_prefs(c, default, always=(), never=()):
    def lst(name, jids):
        return '<%s>%s</%s>' % (name, ''.join('<jid>%s</jid>' % j
                                                for j in jids), name)
    r = c.iq("<iq type='set' id='p%s'><prefs xmlns='%s' default='%s'>%s%s"
             "</prefs></iq>" % (secrets.token_hex(3), NS_MAM, default,
                                lst('always', always), lst('never', never)))
    check_eq(r.get('type'), 'result', 'prefs set: %s' % pvtest.tostr(r))
    p = r.find('{%s}prefs' % NS_MAM)
    check(p is not None, 'prefs result lacks <prefs/>')
    return p


@suite.test
def preferences():
    srv = server()
    h = login(srv, 'hank')
    i = login(srv, 'ivy')
    j = login(srv, 'jack')
    hank = 'hank@%s' % srv.domain
    ivy = 'ivy@%s' % srv.domain
    jack = 'jack@%s' % srv.domain
    r = h.iq("<iq type='get' id='pg1'><prefs xmlns='%s'/></iq>" % NS_MAM)
    check_eq(r.find('{%s}prefs' % NS_MAM).get('default'), 'always',
             'default prefs')
    set_prefs(h, 'never')
    send_chat(i, hank, 'p-never')
    m = recv_body(h, 'p-never')
    check_eq(stanza_ids(m), [], 'stanza-id while never')
    p = set_prefs(h, 'always', never=[jack])
    check_eq([x.text for x in p.iter('{%s}jid' % NS_MAM)], [jack],
             'prefs echo')
    send_chat(i, hank, 'p-always')
    send_chat(j, hank, 'p-jack')
    recv_bodies(h, ['p-always', 'p-jack'])
    p = set_prefs(h, 'never', always=[jack])
    send_chat(i, hank, 'p-ivy2')
    send_chat(j, hank, 'p-jack2')
    recv_bodies(h, ['p-ivy2', 'p-jack2'])
    # roster: only contacts in the roster are archived
    set_prefs(h, 'roster')
    r = h.iq("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'>"
             "<item jid='%s'/></query></iq>" % ivy)
    check_eq(r.get('type'), 'result', 'roster add')
    send_chat(i, hank, 'p-roster-ivy')
    send_chat(j, hank, 'p-roster-jack')
    recv_bodies(h, ['p-roster-ivy', 'p-roster-jack'])
    r = h.iq("<iq type='get' id='pg2'><prefs xmlns='%s'/></iq>" % NS_MAM)
    check_eq(r.find('{%s}prefs' % NS_MAM).get('default'), 'roster',
             'stored prefs')
    items, _ = query(h)
    check_eq(bodies(items), ['p-always', 'p-jack2', 'p-roster-ivy'],
             'archived under prefs')
    err = h.iq("<iq type='set' id='pb'><prefs xmlns='%s' default='maybe'/>"
               "</iq>" % NS_MAM)
    check_eq(pvtest.stanza_error(err)[1], 'bad-request', 'bad default')
    for x in (h, i, j):
        x.close()


@suite.test
def slixmpp_interop():
    """slixmpp's own XEP-0313/XEP-0059 plugins read carol's archive (made
    by the filters test) forward, backward and filtered."""
    srv = server()
    if 'filters' not in state:
        pvtest.skip('filters test did not run')
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          'mam_slix.py')
    cfg = {'host': srv.host('c2s'), 'port': srv.port('c2s'),
           'domain': srv.domain, 'cafile': srv.cafile, 'user': 'carol',
           'password': USERS['carol'], 'with': 'dave@%s' % srv.domain,
           'timeout': 20 * pvtest.time_factor()}
    try:
        r = subprocess.run(['/usr/bin/python3', script, json.dumps(cfg)],
                           capture_output=True, text=True,
                           timeout=60 * pvtest.time_factor())
    except FileNotFoundError:
        pvtest.skip('/usr/bin/python3 missing')
    if 'No module named' in r.stderr and 'slixmpp' in r.stderr:
        pvtest.skip('slixmpp not installed (python3-slixmpp)')
    out = None
    for line in r.stdout.splitlines():
        if line.startswith('{'):
            out = json.loads(line)
    check(r.returncode == 0 and out is not None,
          'slixmpp client failed (%d): %s' % (r.returncode,
                                              (r.stdout + r.stderr)[-2000:]))
    for v in ('with', 'start', 'end', 'after-id', 'before-id', 'ids'):
        check(v in out['fields'], 'slixmpp form lacks %s' % v)
    check_eq(out['forward'], ['f1', 'f2', 'f3', 'f4', 'f5', 'f6'],
             'slixmpp forward')
    check_eq(out['backward'], ['f6', 'f5', 'f4', 'f3', 'f2', 'f1'],
             'slixmpp backward')
    check_eq(out['with'], ['f1', 'f3', 'f4', 'f5'], 'slixmpp with')


@suite.test
def survives_restart():
    srv = server()
    before_ids = state.get('bulk_ids')
    if before_ids is None:
        pvtest.skip('bulk test did not run')
    srv.restart()
    b = login(srv, 'bob')
    items, fin = query(b, rsm={'max': 50, 'before': None})
    check_eq([i for i, _s, _m in items], before_ids[-50:], 'after restart')
    items, fin = query(b, rsm={'max': 50, 'after': before_ids[4999]})
    check_eq([i for i, _s, _m in items], before_ids[5000:5050],
             'middle page after restart')
    c = login(srv, 'carol')
    items, _ = query(c)
    check_eq([i for i, _s, _m in items], state['filters'], 'carol after '
             'restart')
    b.close()
    c.close()


@suite.test
def removed_with_account():
    srv = server()
    check(archive_rows(srv, 'bob'), 'bob has archive rows')
    check(archive_rows(srv, 'alice'), 'alice has archive rows')
    check(any(k[:2] == (srv.domain, 'hank')
              for k in pvtest.store_keys(srv, 'mam.prefs')),
          'hank has prefs')
    srv.ctl('deluser', srv.jid('bob'))
    srv.ctl('deluser', srv.jid('hank'))
    deadline = time.monotonic() + 10 * pvtest.time_factor()
    while archive_rows(srv, 'bob') and time.monotonic() < deadline:
        time.sleep(0.1)
    check_eq(archive_rows(srv, 'bob'), [], 'bob rows after deluser')
    check_eq(archive_rows(srv, 'hank'), [], 'hank rows after deluser')
    check(not any(k[:2] == (srv.domain, 'hank')
                  for k in pvtest.store_keys(srv, 'mam.prefs')),
          'hank prefs after deluser')
    check(archive_rows(srv, 'alice'), 'alice keeps her archive')


@suite.test
def retention():
    srv = server('retention', mam_retention='3s')
    a = login(srv, 'alice')
    b = login(srv, 'bob')
    for n in range(5):
        send_chat(a, 'bob@%s' % srv.domain, 'old-%d' % n)
    recv_body(b, 'old-4')
    items, _ = query(b)
    check_eq(len(items), 5, 'archived before retention')
    deadline = time.monotonic() + 15 * pvtest.time_factor()
    while time.monotonic() < deadline:
        items, _ = query(b)
        if not items:
            break
        time.sleep(0.5)
    check_eq(items, [], 'archive after retention')
    check_eq(archive_rows(srv, 'bob'), [], 'rows after retention')
    send_chat(a, 'bob@%s' % srv.domain, 'fresh')
    recv_body(b, 'fresh')
    items, _ = query(b)
    check_eq(bodies(items), ['fresh'], 'new message kept')
    a.close()
    b.close()


@suite.test
def directives_checked():
    """The directives parse; bad values are configuration errors."""
    if pvtest.available_modules(['mam']) != ['mam']:
        pvtest.skip('mod_mam not built')
    good = suite.server(name='mam-conf-good', modules=MODULES,
                        mam_default='roster', mam_retention='30d',
                        mam_max_page=1000)
    r = subprocess.run([pvtest.palaverd_path(), '-t', '-c', good.conf_path],
                       capture_output=True, text=True, cwd=good.dir)
    check_eq(r.returncode, 0, 'palaverd -t on good mam directives: %s' %
             (r.stdout + r.stderr))
    for kw, name in (({'mam_default': 'sometimes'}, 'mam_default'),
                     ({'mam_retention': '30'}, 'mam_retention'),
                     ({'mam_max_page': 1001}, 'mam_max_page'),
                     ({'mam_max_page': 0}, 'mam_max_page')):
        bad = suite.server(name='mam-conf-bad', modules=MODULES, **kw)
        r = subprocess.run([pvtest.palaverd_path(), '-t', '-c',
                            bad.conf_path], capture_output=True, text=True,
                           cwd=bad.dir)
        check(r.returncode != 0 and name in r.stdout + r.stderr,
              '%r accepted: %s' % (kw, r.stdout + r.stderr))


if __name__ == '__main__':
    suite.main()
