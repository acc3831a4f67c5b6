#!/usr/bin/python3
# XEP-0388 SASL2 with XEP-0386 Bind2 and XEP-0484 FAST: the advertised
# feature, SCRAM-SHA-256 and PLAIN with an inline bind in one round trip
# and no stream restart, failures and <abort/>, the per-IP throttle, FAST
# tokens (issue, use without a password, count replay, wrong token,
# rotation, invalidation, password change, account deletion) and the
# inline features of the session modules when they are built.

import os
import sys
import uuid

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'harness'))
sys.path.insert(0, HERE)
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402
import sasl2_client  # noqa: E402
from sasl2_client import NS_SASL2  # noqa: E402

suite = pvtest.Suite('sasl2')
USERS = {'romeo': 'r0meo-secret', 'juliet': 'jul1et-secret',
         'tybalt': 'tyb4lt-secret', 'mercutio': 'merc-secret',
         'benvolio': 'benv-secret'}
NS_SM = 'urn:xmpp:sm:3'
NS_CARBONS = 'urn:xmpp:carbons:2'
NS_CSI = 'urn:xmpp:csi:0'


def server():
    # failures are part of the tests: the throttle has its own test
    return suite.shared_server(users=USERS, auth_failure_limit='off')


def connect(srv, **kw):
    c = sasl2_client.client(srv, **kw)
    c.connect()
    return c


def fresh_token(srv, user, ua_id=None):
    """Password login asking for a FAST token; returns (client, token)."""
    c = connect(srv, ua_id=ua_id)
    out = c.authenticate(user, USERS[user], bind='pvtest',
                         request_token=True)
    check(out.ok, 'password login failed: %s' % out.condition)
    check(out.token is not None, 'no <token/> in <success/>: %s' %
          pvtest.tostr(out.el))
    return c, out.token[0]


@suite.test
def features_advertised():
    srv = server()
    c = sasl2_client.client(srv, tls='plain')
    f = c.open_stream()
    check(f is not None, 'no features on the plaintext stream')
    check(c.authentication() is None,
          'SASL2 offered before TLS with c2s_require_encryption')
    c.close()
    c = connect(srv)
    a = c.authentication()
    check(a is not None, 'no <authentication xmlns=%s/>' % NS_SASL2)
    # same mechanisms as RFC 6120 SASL on this stream
    check_eq(c.sasl2_mechanisms(), c.mechanisms(),
             'SASL2 mechanisms vs SASL mechanisms')
    check('PLAIN' in c.sasl2_mechanisms(), 'PLAIN not offered under TLS')
    check_eq(c.fast_mechanisms(), ['HT-SHA-256-NONE'], 'FAST mechanisms')
    check(c.bind2_features() is not None, 'no Bind2 <bind/> inline')
    c.close()
    # the sasl_mechanisms directive applies to SASL2 too
    srv2 = suite.server(name='pinned', users=USERS,
                        sasl_mechanisms=['SCRAM-SHA-1'])
    srv2.start()
    c = connect(srv2)
    check_eq(c.sasl2_mechanisms(), ['SCRAM-SHA-1'], 'pinned mechanisms')
    out = c.authenticate('romeo', USERS['romeo'], mech='SCRAM-SHA-256')
    check_eq(out.condition, 'invalid-mechanism', 'unoffered mechanism')
    out = c.authenticate('romeo', USERS['romeo'], mech='SCRAM-SHA-1',
                         bind='pinned')
    check(out.ok, 'SCRAM-SHA-1 via SASL2: %s' % out.condition)
    c.close()


@suite.test
def scram_with_bind2_in_one_round_trip():
    srv = server()
    ua = str(uuid.uuid4())
    c = connect(srv, ua_id=ua)
    out = c.authenticate('romeo', USERS['romeo'], bind='pvtest')
    check(out.ok, 'SCRAM-SHA-256 via SASL2 failed: %s' % out.condition)
    check(out.bound is not None, 'no <bound/> in <success/>')
    jid = out.authzid or ''
    check(jid.startswith('romeo@localhost/pvtest.'),
          'authorization-identifier is not a full JID with the tag: %r' %
          jid)
    # no stream restart: stanzas flow at once
    b = srv.login('juliet', resource='peer')
    pvtest.message_round_trip(c, b)
    r = c.iq("<iq type='get' id='ping1' to='localhost'>"
             "<ping xmlns='urn:xmpp:ping'/></iq>")
    check_eq(r.get('type'), 'result', 'ping after SASL2')
    c.close()
    # the same client (user-agent id) gets the same resource back
    c2 = connect(srv, ua_id=ua)
    out2 = c2.authenticate('romeo', USERS['romeo'], bind='pvtest')
    check(out2.ok, 'second login failed')
    check_eq(out2.authzid, jid, 'resource for the same user-agent id')
    # and another client another one
    c3 = connect(srv)
    out3 = c3.authenticate('romeo', USERS['romeo'], bind='pvtest')
    check(out3.ok and out3.authzid != jid,
          'another user-agent got the same resource %r' % out3.authzid)
    for x in (c2, c3, b):
        x.close()


@suite.test
def without_bind2_and_without_initial_response():
    srv = server()
    c = connect(srv)
    out = c.authenticate('tybalt', USERS['tybalt'], initial=False)
    check(out.ok, 'SCRAM without initial response: %s' % out.condition)
    check_eq(out.authzid, 'tybalt@localhost', 'authzid without Bind2')
    check(out.bound is None, '<bound/> without a <bind/> request')
    # RFC 6120 resource binding on the same stream, no restart
    c.send("<iq type='set' id='b1'><bind xmlns='%s'><resource>legacy"
           "</resource></bind></iq>" % pvtest.NS_BIND)
    r = c.recv_until(lambda e: e.get('id') == 'b1', what='bind result')
    check_eq(r.findtext('{%s}bind/{%s}jid' % (pvtest.NS_BIND,
                                              pvtest.NS_BIND)),
             'tybalt@localhost/legacy', 'bound JID')
    c.close()


@suite.test
def scram_plus_tls_unique_on_tls12():
    srv = server()
    for tls in ('starttls', 'direct'):
        c = sasl2_client.client(srv, tls=tls, tls12=True)
        c.connect()
        check('SCRAM-SHA-256-PLUS' in c.sasl2_mechanisms(),
              '-PLUS not offered via SASL2 over %s' % tls)
        cb = c.tls_unique()
        check(cb, 'no tls-unique data on TLS 1.2')
        bad = bytes([cb[0] ^ 1]) + cb[1:]
        out = c.authenticate('romeo', USERS['romeo'],
                             mech='SCRAM-SHA-256-PLUS', cb_type='tls-unique',
                             cb_data=bad)
        check_eq(out.condition, 'not-authorized', 'corrupted binding')
        out = c.authenticate('romeo', USERS['romeo'],
                             mech='SCRAM-SHA-256-PLUS', cb_type='tls-unique',
                             cb_data=cb, bind='plus')
        check(out.ok, 'SCRAM-SHA-256-PLUS via SASL2 over %s: %s' %
              (tls, out.condition))
        c.close()


@suite.test
def wrong_password_and_unknown_user():
    srv = server()
    for user, pw in (('romeo', 'not-the-password'), ('nobody', 'x')):
        c = connect(srv)
        out = c.authenticate(user, pw, bind='x')
        check_eq(out.condition, 'not-authorized', 'wrong password (%s)' %
                 user)
        # the stream stays usable: try again correctly
        if user == 'romeo':
            out = c.authenticate('romeo', USERS['romeo'], bind='retry')
            check(out.ok, 'retry after a failure: %s' % out.condition)
        c.close()
    c = connect(srv)
    out = c.authenticate('romeo', 'nope', mech='PLAIN')
    check_eq(out.condition, 'not-authorized', 'PLAIN wrong password')
    c.close()


@suite.test
def plain_via_sasl2():
    srv = server()
    c = connect(srv)
    out = c.authenticate('juliet', USERS['juliet'], mech='PLAIN',
                         bind='plain')
    check(out.ok, 'PLAIN via SASL2 failed: %s' % out.condition)
    check((out.authzid or '').startswith('juliet@localhost/plain.'),
          'authzid %r' % out.authzid)
    check(out.additional_data is None, 'PLAIN has no additional data')
    b = srv.login('romeo', resource='plainpeer')
    pvtest.message_round_trip(c, b)
    c.close()
    b.close()


@suite.test
def abort_and_garbage():
    srv = server()
    c = connect(srv)
    sc = pvtest.Scram('SCRAM-SHA-256', 'romeo', USERS['romeo'])
    c.send("<authenticate xmlns='%s' mechanism='SCRAM-SHA-256'>"
           "<initial-response>%s</initial-response></authenticate>" %
           (NS_SASL2, sasl2_client.b64(sc.first())))
    el = c.recv()
    check_eq(el.tag, '{%s}challenge' % NS_SASL2, 'first answer')
    c.send("<abort xmlns='%s'/>" % NS_SASL2)
    out = sasl2_client.Outcome(c.recv())
    check_eq(out.condition, 'aborted', 'answer to <abort/>')
    # a <response/> with nothing running
    c.send("<response xmlns='%s'>AAAA</response>" % NS_SASL2)
    check_eq(sasl2_client.Outcome(c.recv()).condition, 'malformed-request',
             'stray <response/>')
    # bad base64
    c.send("<authenticate xmlns='%s' mechanism='PLAIN'><initial-response>"
           "!!!</initial-response></authenticate>" % NS_SASL2)
    check_eq(sasl2_client.Outcome(c.recv()).condition, 'incorrect-encoding',
             'bad base64')
    out = c.authenticate('romeo', USERS['romeo'], bind='afterabort')
    check(out.ok, 'login after abort: %s' % out.condition)
    c.close()


@suite.test
def hostile_requests():
    srv = server()
    c = connect(srv)
    proof = sasl2_client.b64(b'romeo\0' + b'x' * 32)
    cases = [
        ("<authenticate xmlns='%s'/>" % NS_SASL2, 'invalid-mechanism'),
        ("<authenticate xmlns='%s' mechanism='X-NONE'><initial-response>"
         "AAAA</initial-response></authenticate>" % NS_SASL2,
         'invalid-mechanism'),
        ("<whatever xmlns='%s'/>" % NS_SASL2, 'malformed-request'),
        # FAST without <fast/>, without user-agent, with a bad count,
        # without an initial response
        ("<authenticate xmlns='%s' mechanism='HT-SHA-256-NONE'>"
         "<initial-response>%s</initial-response><user-agent id='a'/>"
         "</authenticate>" % (NS_SASL2, proof), 'malformed-request'),
        ("<authenticate xmlns='%s' mechanism='HT-SHA-256-NONE'>"
         "<initial-response>%s</initial-response><fast xmlns='%s'/>"
         "</authenticate>" % (NS_SASL2, proof, sasl2_client.NS_FAST),
         'malformed-request'),
        ("<authenticate xmlns='%s' mechanism='HT-SHA-256-NONE'>"
         "<initial-response>%s</initial-response><user-agent id='a'/>"
         "<fast xmlns='%s' count='-1'/></authenticate>" %
         (NS_SASL2, proof, sasl2_client.NS_FAST), 'malformed-request'),
        ("<authenticate xmlns='%s' mechanism='HT-SHA-256-NONE'>"
         "<user-agent id='a'/><fast xmlns='%s' count='1'/></authenticate>"
         % (NS_SASL2, sasl2_client.NS_FAST), 'malformed-request'),
        # an over-long user-agent id is not a key
        ("<authenticate xmlns='%s' mechanism='HT-SHA-256-NONE'>"
         "<initial-response>%s</initial-response><user-agent id='%s'/>"
         "<fast xmlns='%s' count='1'/></authenticate>" %
         (NS_SASL2, proof, 'i' * 5000, sasl2_client.NS_FAST),
         'malformed-request'),
        # SCRAM garbage
        ("<authenticate xmlns='%s' mechanism='SCRAM-SHA-256'>"
         "<initial-response>%s</initial-response></authenticate>" %
         (NS_SASL2, sasl2_client.b64(b'garbage')), 'malformed-request'),
    ]
    for xml, want in cases:
        c.send(xml)
        check_eq(sasl2_client.Outcome(c.recv()).condition, want, xml[:120])
    # a huge Bind2 tag is dropped, the login still works
    out = c.authenticate('romeo', USERS['romeo'], bind='t' * 3000)
    check(out.ok and out.bound is not None, 'login with a huge tag')
    check(len(out.authzid) < 100, 'tag not dropped: %r' % out.authzid)
    c.close()


@suite.test
def throttled_after_failures():
    srv = suite.server(name='throttle', users=USERS, auth_failure_limit=2,
                       auth_failure_window='1m')
    srv.start()
    c = connect(srv)
    for _ in range(2):
        check_eq(c.authenticate('romeo', 'bad').condition, 'not-authorized',
                 'wrong password')
    check_eq(c.authenticate('romeo', USERS['romeo']).condition,
             'temporary-auth-failure', 'login while blocked')
    check_eq(c.fast('romeo', 'whatever', count=1).condition,
             'temporary-auth-failure', 'FAST while blocked')
    c.close()


@suite.test
def fast_token_login():
    srv = server()
    ua = str(uuid.uuid4())
    c, token = fresh_token(srv, 'mercutio', ua)
    c.close()
    c = connect(srv, ua_id=ua)
    out = c.fast('mercutio', token, count=1, bind='fast')
    check(out.ok, 'FAST login failed: %s' % out.condition)
    check((out.authzid or '').startswith('mercutio@localhost/fast.'),
          'FAST authzid %r' % out.authzid)
    check(out.token is None, 'unrequested new token for a fresh one')
    b = srv.login('juliet', resource='fastpeer')
    pvtest.message_round_trip(c, b)
    b.close()
    c.close()
    # replay of count 1, then count 2
    c = connect(srv, ua_id=ua)
    check_eq(c.fast('mercutio', token, count=1).condition, 'not-authorized',
             'replayed count')
    check(c.fast('mercutio', token, count=2).ok, 'count 2 refused')
    c.close()
    # a wrong token, the right token under another user-agent id, another
    # user, a malformed proof
    c = connect(srv, ua_id=ua)
    check_eq(c.fast('mercutio', token + 'x', count=3).condition,
             'not-authorized', 'wrong token')
    check_eq(c.fast('mercutio', token, proof=b'short').condition,
             'malformed-request', 'short proof')
    c.close()
    c = connect(srv)
    check_eq(c.fast('mercutio', token, count=4).condition, 'not-authorized',
             'token under another user-agent id')
    c.close()
    c = connect(srv, ua_id=ua)
    check_eq(c.fast('romeo', token, count=5).condition, 'not-authorized',
             'token for another user')
    check(c.fast('mercutio', token, count=6).ok, 'count 6 refused')
    c.close()


@suite.test
def fast_rotation_and_invalidation():
    srv = server()
    ua = str(uuid.uuid4())
    c, old = fresh_token(srv, 'benvolio', ua)
    c.close()
    # asking for a new token while using the old one
    c = connect(srv, ua_id=ua)
    out = c.fast('benvolio', old, count=1, request_token=True)
    check(out.ok and out.token is not None,
          'no new token on request: %s' % pvtest.tostr(out.el))
    new = out.token[0]
    check(new != old, 'rotated token equals the old one')
    c.close()
    # the old one stays valid until the new one is used (XEP-0484 §5.4)
    c = connect(srv, ua_id=ua)
    check(c.fast('benvolio', old, count=2).ok,
          'old token refused before the new one was used')
    c.close()
    c = connect(srv, ua_id=ua)
    check(c.fast('benvolio', new, count=1).ok, 'new token refused')
    c.close()
    c = connect(srv, ua_id=ua)
    check_eq(c.fast('benvolio', old, count=3).condition, 'not-authorized',
             'old token after the new one was used')
    # invalidation
    out = c.fast('benvolio', new, count=2, invalidate=True)
    check(out.ok, 'invalidating login failed: %s' % out.condition)
    check(out.token is None, 'a token after invalidate without request')
    c.close()
    c = connect(srv, ua_id=ua)
    check_eq(c.fast('benvolio', new, count=3).condition, 'not-authorized',
             'invalidated token')
    c.close()


@suite.test
def fast_void_after_password_change():
    srv = suite.server(name='passwd', users=USERS)
    srv.start()
    ua = str(uuid.uuid4())
    c, token = fresh_token(srv, 'romeo', ua)
    c.close()
    srv.ctl('passwd', srv.jid('romeo'), input='a-new-secret\n')
    c = connect(srv, ua_id=ua)
    out = c.fast('romeo', token, count=1)
    check_eq(out.condition, 'credentials-expired',
             'FAST after a password change')
    out = c.authenticate('romeo', 'a-new-secret', bind='x')
    check(out.ok, 'new password refused')
    c.close()


@suite.test
def fast_tokens_removed_with_the_account():
    srv = suite.server(name='deluser', users=USERS)
    srv.start()
    ua = str(uuid.uuid4())
    c, token = fresh_token(srv, 'tybalt', ua)
    c.close()
    c, _ = fresh_token(srv, 'juliet')
    c.close()
    # the write is asynchronous: a login later it is surely committed
    c = connect(srv)
    c.authenticate('romeo', USERS['romeo'])
    c.close()
    keys = pvtest.store_keys(srv, 'fast.tokens')
    check(('localhost', 'tybalt', ua) in keys,
          'token row of tybalt missing: %s' % keys)
    srv.ctl('deluser', srv.jid('tybalt'))
    keys = pvtest.store_keys(srv, 'fast.tokens')
    check(not any(k[1] == 'tybalt' for k in keys),
          'token rows of a deleted account left: %s' % keys)
    check(any(k[1] == 'juliet' for k in keys), 'other rows went too')
    c = connect(srv, ua_id=ua)
    check_eq(c.fast('tybalt', token, count=1).condition, 'not-authorized',
             'token of a deleted account')
    c.close()


@suite.test
def bind2_inline_features_of_modules():
    mods = pvtest.available_modules(['smacks', 'carbons', 'csi'])
    if not mods:
        pvtest.skip('mod_smacks, mod_carbons, mod_csi not built')
    srv = suite.server(name='inline', users=USERS,
                       modules=pvtest.available_modules(pvtest.CORE_MODULES)
                       + ['roster', 'presence'] + mods)
    srv.start()
    c = connect(srv)
    feats = c.bind2_features() or []
    want = {'smacks': NS_SM, 'carbons': NS_CARBONS, 'csi': NS_CSI}
    missing = [m for m in mods if want[m] not in feats]
    if missing:
        pvtest.skip('modules %s advertise no Bind2 inline feature yet '
                    '(placeholders?); got %s' % (missing, feats))
    if 'smacks' in mods:
        check(c.authentication().find('{%s}inline/{%s}sm' %
                                      (NS_SASL2, NS_SM)) is not None,
              'no <sm/> among the SASL2 inline features')
    extra = ''
    if 'smacks' in mods:
        extra += "<enable xmlns='%s' resume='true'/>" % NS_SM
    if 'carbons' in mods:
        extra += "<enable xmlns='%s'/>" % NS_CARBONS
    if 'csi' in mods:
        extra += "<inactive xmlns='%s'/>" % NS_CSI
    out = c.authenticate('romeo', USERS['romeo'], bind='inline',
                         bind_extra=extra)
    check(out.ok and out.bound is not None, 'login with inline features')
    if 'smacks' in mods:
        check(out.bound.find('{%s}enabled' % NS_SM) is not None,
              'no <enabled/> in <bound/>: %s' % pvtest.tostr(out.el))
    b = srv.login('juliet', resource='inlinepeer')
    if 'csi' in mods:
        c.send("<active xmlns='%s'/>" % NS_CSI)
    pvtest.message_round_trip(c, b)
    c.close()
    b.close()


@suite.test
def inline_resume_with_smacks():
    if not pvtest.available_modules(['smacks']):
        pvtest.skip('mod_smacks not built')
    srv = suite.server(name='resume', users=USERS,
                       modules=pvtest.available_modules(pvtest.CORE_MODULES)
                       + ['roster', 'presence', 'smacks'])
    srv.start()
    ua = str(uuid.uuid4())
    c = connect(srv, ua_id=ua)
    if c.authentication().find('{%s}inline/{%s}sm' % (NS_SASL2, NS_SM)) \
            is None:
        pvtest.skip('mod_smacks advertises no SASL2 inline <sm/> yet')
    out = c.authenticate('romeo', USERS['romeo'], bind='res',
                         bind_extra="<enable xmlns='%s' resume='true'/>"
                         % NS_SM, request_token=True)
    check(out.ok, 'login: %s' % out.condition)
    en = out.bound.find('{%s}enabled' % NS_SM) if out.bound is not None \
        else None
    check(en is not None and en.get('id'), 'no resumable <enabled/>')
    full = out.authzid
    token = out.token[0]
    b = srv.login('juliet', resource='resumepeer')
    b.send("<message type='chat' to='%s' id='r1'><body>one</body>"
           "</message>" % full)
    c.recv_until(lambda e: e.get('id') == 'r1', what='first message')
    # the connection drops without a clean end: the session hibernates
    c.close()
    b.send("<message type='chat' to='%s' id='r2'><body>two</body>"
           "</message>" % full)
    b.iq("<iq type='get' id='sync' to='localhost'>"
         "<ping xmlns='urn:xmpp:ping'/></iq>")
    # resume inline (with the FAST token); the <bind/> must be ignored
    c4 = connect(srv, ua_id=ua)
    out = c4.fast('romeo', token, count=1, bind='ignored',
                  extra="<resume xmlns='%s' previd='%s' h='1'/>"
                  % (NS_SM, en.get('id')))
    check(out.ok, 'resuming login: %s' % out.condition)
    check(out.find('{%s}resumed' % NS_SM) is not None,
          'no <resumed/> in <success/>: %s' % pvtest.tostr(out.el))
    check(out.bound is None, 'bound although resumed')
    check_eq(out.authzid, full, 'authzid of the resumed session')
    # queued stanzas come after <success/> (the Outcome above was the
    # first element on the stream)
    c4.recv_until(lambda e: e.get('id') == 'r2', what='queued message')
    c4.jid = full
    pvtest.message_round_trip(c4, b)
    c4.close()
    b.close()


if __name__ == '__main__':
    suite.main()
