#!/usr/bin/python3
# mod_register (XEP-0077): the stream feature and the sign-up form, sign-up
# with plain fields and with the data form (then SASL on the same stream,
# as XEP-0077 §3.1.1 expects), conflicts and malformed requests,
# register_open = false refusing sign-up but allowing password change and
# removal, the per-IP register_rate_limit (a second address on
# 127.0.0.2), password change, and account removal (the session ends, the
# login fails, no row is left in the store); plus the xep0077_*.scn files.

import glob
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, stanza_error, tostr  # noqa: E402

NS_REGISTER = 'jabber:iq:register'
NS_FEATURE = 'http://jabber.org/features/iq-register'
NS_DATA = 'jabber:x:data'
NS_STANZA_ERR = pvtest.NS_STANZA_ERR
MODULES = ['disco', 'ping', 'register', 'vcard', 'private']

suite = pvtest.Suite('register')


def scenario_files():
    return sorted(glob.glob(os.path.join(pvtest.scenarios_dir(),
                                         'xep0077_*.scn')))


def need_module():
    if 'register' not in pvtest.available_modules(MODULES):
        pvtest.skip('mod_register not built')


def open_server():
    need_module()
    users = {'taken': 't4ken-pw'}
    for path in scenario_files():
        for _, jid, pw in pvtest.scenario_clients(path):
            users[jid.split('@')[0]] = pw
    return suite.shared_server('open', users=users,
                               modules=pvtest.available_modules(MODULES),
                               register_open=True, register_rate_limit='off')


def limited_server():
    need_module()
    return suite.shared_server('limited', modules=['disco', 'register'],
                               register_open=True, register_rate_limit=2,
                               register_rate_window='10m')


def closed_server():
    need_module()
    return suite.shared_server('closed', users={'zed': 'z3d-pw',
                                                'yan': 'y4n-pw'},
                               modules=['disco', 'register'])


store_keys = pvtest.store_keys
def store_dbs(srv):
    r = subprocess.run(['mdb_dump', '-l', srv.data_dir], capture_output=True,
                       text=True)
    check_eq(r.returncode, 0, 'mdb_dump -l: %s' % r.stderr)
    return [d for d in r.stdout.split() if d != 'meta']


def user_rows(srv, user):
    """Every row of user in every store of the environment."""
    return [(db, k) for db in store_dbs(srv) for k in store_keys(srv, db)
            if k[:2] == (srv.domain, user)]


def preauth(srv, source=None):
    """A client on an encrypted, unauthenticated stream."""
    c = srv.client(source=source)
    c.connect()
    return c


def signup_plain(c, user, password, iq_id='reg'):
    return c.iq("<iq type='set' id='%s'><query xmlns='%s'><username>%s"
                "</username><password>%s</password></query></iq>"
                % (iq_id, NS_REGISTER, user, password))


def signup_form(c, user, password, iq_id='regf',
                form_type=NS_REGISTER):
    return c.iq(
        "<iq type='set' id='%s'><query xmlns='%s'><x xmlns='%s' "
        "type='submit'><field var='FORM_TYPE' type='hidden'><value>%s"
        "</value></field><field var='username'><value>%s</value></field>"
        "<field var='password'><value>%s</value></field></x></query></iq>"
        % (iq_id, NS_REGISTER, NS_DATA, form_type, user, password))


def can_login(srv, user, password):
    c = srv.client()
    c.connect()
    cond = c.auth(user, password)
    c.close()
    return cond is None


def has_register_feature(features):
    return features is not None and \
        features.find('{%s}register' % NS_FEATURE) is not None


@suite.test
def feature_and_form():
    srv = open_server()
    c = srv.client()
    f = c.open_stream()
    check(not has_register_feature(f),
          'register offered before STARTTLS (pre-auth IQs need TLS)')
    f = c.starttls()
    check(has_register_feature(f), 'no <register/> stream feature: %s'
          % tostr(f))
    r = c.iq("<iq type='get' id='form'><query xmlns='%s'/></iq>"
             % NS_REGISTER)
    check_eq(r.get('type'), 'result', 'registration fields')
    q = r.find('{%s}query' % NS_REGISTER)
    for name in ('instructions', 'username', 'password'):
        check(q.find('{%s}%s' % (NS_REGISTER, name)) is not None,
              'no <%s/> in %s' % (name, tostr(r)))
    x = q.find('{%s}x' % NS_DATA)
    check(x is not None and x.get('type') == 'form', 'no data form')
    fields = {f.get('var'): f for f in x.findall('{%s}field' % NS_DATA)}
    check_eq(fields['FORM_TYPE'].findtext('{%s}value' % NS_DATA),
             NS_REGISTER, 'FORM_TYPE')
    check_eq(fields['FORM_TYPE'].get('type'), 'hidden', 'FORM_TYPE type')
    check_eq(fields['password'].get('type'), 'text-private',
             'password field type')
    check(fields['username'].find('{%s}required' % NS_DATA) is not None,
          'username not required')
    c.close()


@suite.test
def signup_plain_fields_then_login_on_same_stream():
    srv = open_server()
    c = preauth(srv)
    r = signup_plain(c, 'newbie', 'n3wbie-pw')
    check_eq(r.get('type'), 'result', 'sign-up: %s' % tostr(r))
    # XEP-0077 §3.1.1: the new account authenticates on the same stream
    check_eq(c.auth('newbie', 'n3wbie-pw'), None,
             'SASL right after the sign-up result')
    check_eq(c.bind('first'), 'newbie@%s/first' % srv.domain, 'bound JID')
    c.close()
    check(can_login(srv, 'newbie', 'n3wbie-pw'), 'login on a new stream')
    check(not can_login(srv, 'newbie', 'wrong'), 'wrong password accepted')
    check(('localhost', 'newbie') in store_keys(srv, 'accounts.users'),
          'no accounts.users row for newbie')


@suite.test
def signup_with_data_form():
    srv = open_server()
    c = preauth(srv)
    r = signup_form(c, 'formuser', 'f0rm-pw')
    check_eq(r.get('type'), 'result', 'sign-up with the form: %s' % tostr(r))
    check_eq(c.auth('formuser', 'f0rm-pw'), None, 'SASL after form sign-up')
    c.close()
    check(can_login(srv, 'formuser', 'f0rm-pw'), 'login of formuser')
    # XEP-0077 §4: the form wins over plain fields sent with it
    c = preauth(srv)
    r = c.iq("<iq type='set' id='both'><query xmlns='%s'><username>plain"
             "</username><password>plain-pw</password><x xmlns='%s' "
             "type='submit'><field var='username'><value>fromform</value>"
             "</field><field var='password'><value>f0rm2-pw</value></field>"
             "</x></query></iq>" % (NS_REGISTER, NS_DATA))
    check_eq(r.get('type'), 'result', 'sign-up with form and fields')
    c.close()
    check(can_login(srv, 'fromform', 'f0rm2-pw'), 'the form\'s account')
    check(not can_login(srv, 'plain', 'plain-pw'),
          'the plain fields created an account too')


@suite.test
def client_gone_before_the_answer():
    # the answer waits for hashing and the commit; a client that leaves
    # meanwhile must not take the server down (the sanitizer build checks
    # the memory side when the suite stops the server)
    srv = open_server()
    for i in range(5):
        c = preauth(srv)
        c.send("<iq type='set' id='gone%d'><query xmlns='%s'><username>"
               "gone%d</username><password>g0ne-pw</password></query></iq>"
               % (i, NS_REGISTER, i))
        c.close()
    deadline = pvtest.time.monotonic() + 10 * pvtest.time_factor()
    while not can_login(srv, 'gone4', 'g0ne-pw'):
        check(pvtest.time.monotonic() < deadline,
              'the account of a client that left was not created')
        pvtest.time.sleep(0.1)
    check(srv.running(), 'server died')


@suite.test
def conflicts():
    srv = open_server()
    c = preauth(srv)
    for i, (user, what) in enumerate((
            ('taken', 'an account made by palaverctl'),
            ('newbie', 'an account registered in-band'),
            ('NewBie', 'a case variant (RFC 8265 case mapping)'))):
        r = signup_plain(c, user, 'other-pw', 'c%d' % i)
        check_eq(stanza_error(r), ('cancel', 'conflict'), what)
    c.close()
    check(can_login(srv, 'newbie', 'n3wbie-pw'),
          'a conflicting sign-up changed the password')


@suite.test
def malformed_requests():
    srv = open_server()
    c = preauth(srv)
    cases = [
        ('a space in the username',
         "<username>two words</username><password>p</password>",
         ('modify', 'jid-malformed')),
        ('an @ in the username',
         "<username>x@y</username><password>p</password>",
         ('modify', 'jid-malformed')),
        ('empty password', "<username>nopw</username><password/>",
         ('modify', 'not-acceptable')),
        ('no username', "<password>p</password>",
         ('modify', 'not-acceptable')),
        ('remove before authentication', "<remove/>",
         ('cancel', 'unexpected-request')),
        ('form of type form', "<x xmlns='%s' type='form'/>" % NS_DATA,
         ('modify', 'bad-request')),
    ]
    for i, (what, inner, want) in enumerate(cases):
        r = c.iq("<iq type='set' id='m%d'><query xmlns='%s'>%s</query></iq>"
                 % (i, NS_REGISTER, inner))
        check_eq(stanza_error(r), want, what)
    r = signup_form(c, 'wrongtype', 'w-pw', 'wt', form_type='urn:x:other')
    check_eq(stanza_error(r), ('modify', 'bad-request'), 'other FORM_TYPE')
    c.close()
    check(not can_login(srv, 'wrongtype', 'w-pw'),
          'a refused sign-up created an account')


@suite.test
def rate_limit_per_address():
    srv = limited_server()      # 2 sign-ups per address per 10 minutes
    c = preauth(srv, source='127.0.0.2')
    for i in range(2):
        r = signup_plain(c, 'rate%d' % i, 'r4te-pw', 'r%d' % i)
        check_eq(r.get('type'), 'result', 'sign-up %d from 127.0.0.2' % i)
    r = signup_plain(c, 'rate2', 'r4te-pw', 'r2')
    check_eq(stanza_error(r), ('wait', 'not-acceptable'),
             'third sign-up from 127.0.0.2')
    text = r.findtext('{%s}error/{%s}text' % (pvtest.NS_CLIENT,
                                              NS_STANZA_ERR))
    check(text and 'too many' in text, 'no explanation: %s' % tostr(r))
    c.close()
    # a new connection from the same address is still limited
    c = preauth(srv, source='127.0.0.2')
    check_eq(stanza_error(signup_form(c, 'rate3', 'r4te-pw')),
             ('wait', 'not-acceptable'), 'sign-up on a new stream')
    c.close()
    check(not can_login(srv, 'rate2', 'r4te-pw'),
          'the refused sign-up created an account')
    # another address has its own budget; a conflict costs nothing
    c = preauth(srv, source='127.0.0.1')
    check_eq(stanza_error(signup_plain(c, 'rate0', 'x', 'dup')),
             ('cancel', 'conflict'), 'conflict from 127.0.0.1')
    for i in (4, 5):
        r = signup_plain(c, 'rate%d' % i, 'r4te-pw', 'o%d' % i)
        check_eq(r.get('type'), 'result', 'sign-up rate%d from 127.0.0.1'
                 % i)
    c.close()
    check(can_login(srv, 'rate5', 'r4te-pw'), 'login of rate5')


@suite.test
def closed_registration():
    srv = closed_server()
    c = srv.client()
    f = c.connect()
    check(not has_register_feature(f), 'register offered while closed')
    r = c.iq("<iq type='get' id='cg'><query xmlns='%s'/></iq>" % NS_REGISTER)
    check_eq(stanza_error(r), ('cancel', 'service-unavailable'),
             'fields while closed')
    r = signup_plain(c, 'sneaky', 'sn3aky-pw', 'cs')
    check_eq(stanza_error(r), ('cancel', 'service-unavailable'),
             'sign-up while closed')
    check_eq(c.auth('sneaky', 'sn3aky-pw'), 'not-authorized',
             'login of the refused account')
    c.close()
    check(not can_login(srv, 'sneaky', 'sn3aky-pw'), 'sneaky exists')


def change_password(c, new, iq_id='pw', user=None, form=False):
    user = user or c.jid.split('@')[0]
    if form:
        inner = ("<x xmlns='%s' type='submit'><field var='FORM_TYPE'>"
                 "<value>jabber:iq:register:changepassword</value></field>"
                 "<field var='username'><value>%s</value></field>"
                 "<field var='password'><value>%s</value></field></x>"
                 % (NS_DATA, user, new))
    else:
        inner = ("<username>%s</username><password>%s</password>"
                 % (user, new))
    return c.iq("<iq type='set' id='%s' to='%s'><query xmlns='%s'>%s"
                "</query></iq>" % (iq_id, c.domain, NS_REGISTER, inner))


def password_change_flow(srv, user, old):
    c = srv.login(user, old, resource='pw')
    r = change_password(c, 'ch4nged-pw', 'pw1')
    check_eq(r.get('type'), 'result', 'password change: %s' % tostr(r))
    check(not can_login(srv, user, old), 'old password still works')
    check(can_login(srv, user, 'ch4nged-pw'), 'new password refused')
    r = change_password(c, 'f0rm-ch4nged', 'pw2', form=True)
    check_eq(r.get('type'), 'result', 'password change with the form')
    check(can_login(srv, user, 'f0rm-ch4nged'), 'form password refused')
    # refusals leave the password alone
    check_eq(stanza_error(change_password(c, '', 'pw3')),
             ('modify', 'bad-request'), 'empty new password')
    check_eq(stanza_error(change_password(c, 'x-pw', 'pw4', user='taken')),
             ('modify', 'not-acceptable'), 'another user\'s password')
    check(can_login(srv, user, 'f0rm-ch4nged'), 'password after refusals')
    if srv.users.get('taken'):
        check(can_login(srv, 'taken', srv.users['taken']),
              'taken\'s password changed by another user')
    c.close()


@suite.test
def password_change():
    srv = open_server()
    password_change_flow(srv, 'newbie', 'n3wbie-pw')


@suite.test
def password_change_and_removal_while_closed():
    srv = closed_server()
    password_change_flow(srv, 'zed', 'z3d-pw')
    c = srv.login('yan', 'y4n-pw', resource='bye')
    r = c.iq("<iq type='set' id='rm'><query xmlns='%s'><remove/></query>"
             "</iq>" % NS_REGISTER)
    check_eq(r.get('type'), 'result', 'removal while closed')
    check(c.wait_closed(10 * pvtest.time_factor()), 'session still open')
    check(not can_login(srv, 'yan', 'y4n-pw'), 'yan can still log in')


@suite.test
def account_removal():
    srv = open_server()
    c = preauth(srv)
    check_eq(signup_plain(c, 'leaving', 'l3ave-pw').get('type'), 'result',
             'sign-up of leaving')
    check_eq(c.auth('leaving', 'l3ave-pw'), None, 'login of leaving')
    c.bind('one')
    other = srv.login('leaving', 'l3ave-pw', resource='two')
    if 'vcard' in srv.modules:
        check_eq(c.iq("<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>"
                      "L</FN></vCard></iq>").get('type'), 'result',
                 'vCard set')
    if 'private' in srv.modules:
        check_eq(c.iq("<iq type='set' id='p'><query xmlns='jabber:iq:"
                      "private'><storage xmlns='storage:bookmarks'/></query>"
                      "</iq>").get('type'), 'result', 'private set')
    rows = user_rows(srv, 'leaving')
    check(any(db == 'accounts.users' for db, _ in rows),
          'no account row before removal: %s' % rows)
    r = c.iq("<iq type='set' id='rm1'><query xmlns='%s'><remove/></query>"
             "</iq>" % NS_REGISTER)
    check_eq(r.get('type'), 'result', 'removal: %s' % tostr(r))
    # XEP-0077 §3.2: every session ends with <not-authorized/>
    check_eq(c.expect_stream_error(), 'not-authorized', 'stream error on '
             'the removing session')
    check_eq(other.expect_stream_error(), 'not-authorized',
             'stream error on the other session')
    check(not can_login(srv, 'leaving', 'l3ave-pw'), 'login after removal')
    check_eq(user_rows(srv, 'leaving'), [], 'rows left after removal')
    # the name is free again
    c = preauth(srv)
    check_eq(signup_plain(c, 'leaving', 'b4ck-pw').get('type'), 'result',
             'sign-up again with the removed name')
    c.close()


@suite.test
def writes_racing_the_removal_leave_no_row():
    # the deletion commits after the answer; stanzas the client sends right
    # behind <remove/> must not re-create rows of the removed account
    srv = open_server()
    if 'vcard' not in srv.modules or 'private' not in srv.modules:
        pvtest.skip('needs mod_vcard and mod_private')
    c = preauth(srv)
    check_eq(signup_plain(c, 'racer', 'r4cer-pw').get('type'), 'result',
             'sign-up of racer')
    check_eq(c.auth('racer', 'r4cer-pw'), None, 'login of racer')
    c.bind('r')
    c.send("<iq type='set' id='rm3'><query xmlns='%s'><remove/></query></iq>"
           "<iq type='set' id='v3'><vCard xmlns='vcard-temp'><FN>late</FN>"
           "</vCard></iq><iq type='set' id='p3'><query xmlns='jabber:iq:"
           "private'><late xmlns='urn:example:late'/></query></iq>"
           % NS_REGISTER)
    check_eq(c.expect_stream_error(), 'not-authorized', 'end of session')
    check(not can_login(srv, 'racer', 'r4cer-pw'), 'racer can log in')
    check_eq(user_rows(srv, 'racer'), [], 'rows left after the race')


@suite.test
def removal_must_be_alone():
    srv = open_server()
    c = srv.login('formuser', 'f0rm-pw', resource='rm')
    r = c.iq("<iq type='set' id='rm2'><query xmlns='%s'><remove/><username>"
             "formuser</username></query></iq>" % NS_REGISTER)
    check_eq(stanza_error(r), ('modify', 'bad-request'),
             '<remove/> with other children')
    c.close()
    check(can_login(srv, 'formuser', 'f0rm-pw'), 'formuser was removed')


def scenario_test(path):
    def test():
        srv = open_server()
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
