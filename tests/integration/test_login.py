#!/usr/bin/python3
# Login paths: each SASL mechanism pinned with sasl_mechanisms, over STARTTLS
# and direct TLS, by libstrophe (scn_runner) and by the harness's own SASL
# client; wrong passwords; SASL refused before TLS (RFC 6120 §5.3.1,
# §6.4.1). One server per pinned mechanism.

import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402

suite = pvtest.Suite('login')
USERS = {'romeo': 'r0meo-secret', 'juliet': 'jul1et-secret'}

LOGIN_SCN = """# written by test_login.py: libstrophe logs in over both transports
[client] a jid=romeo@${domain}/starttls password=r0meo-secret
[client] b jid=juliet@${domain}/direct password=jul1et-secret tls=direct

a connects
b connects

a sends:
    <message type='chat' to='${b.full}' id='login-1'><body>hello</body></message>

b receives:
    <message type='chat' from='${a.full}' id='login-1'><body>hello</body></message>

b sends:
    <message type='chat' to='${a.full}' id='login-2'><body>hi</body></message>

a receives:
    <message type='chat' from='${b.full}' id='login-2'><body>hi</body></message>
"""


def pinned(mech):
    def test():
        srv = suite.server(name=mech, users=USERS, sasl_mechanisms=[mech])
        srv.start()
        for tls in ('starttls', 'direct'):
            c = srv.client(tls=tls)
            c.connect()
            check_eq(c.mechanisms(), [mech],
                     'mechanisms offered over %s' % tls)
            check_eq(c.auth('romeo', USERS['romeo'], mech=mech), None,
                     '%s login over %s' % (mech, tls))
            c.bind('raw-' + tls)
            c.close()
        # libstrophe cannot choose: it gets the one mechanism offered
        pvtest.run_scenario_text(srv, LOGIN_SCN, 'login-' + mech)
        # wrong password and unknown user look the same (RFC 6120 §6.5.10)
        for user, pw in (('romeo', 'not-the-password'),
                         ('nobody-at-all', 'whatever')):
            c = srv.client()
            c.connect()
            check_eq(c.auth(user, pw, mech=mech), 'not-authorized',
                     '%s with a wrong password (%s)' % (mech, user))
            c.close()
    test.__name__ = 'pinned_' + mech.replace('-', '_')
    return test


for _m in ('SCRAM-SHA-1', 'SCRAM-SHA-256', 'PLAIN'):
    suite.test(pinned(_m))


@suite.test
def sasl_refused_before_tls():
    srv = suite.shared_server(users=USERS, c2s_require_encryption=True)
    c = srv.client(tls='plain')
    f = c.open_stream()
    check(f is not None, 'no features on the plaintext stream')
    check(f.find('{%s}starttls' % pvtest.NS_TLS) is not None,
          'STARTTLS not offered')
    check_eq(c.mechanisms(f), [], 'SASL mechanisms offered before TLS')
    # RFC 6120 §6.4.1 / §5.3.1: an <auth/> anyway must not succeed
    import base64
    c.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" %
           (pvtest.NS_SASL,
            base64.b64encode(b'\0romeo\0' + USERS['romeo'].encode())
            .decode()))
    try:
        el = c.recv()
    except pvtest.StreamClosed:
        return
    if el.tag == '{%s}failure' % pvtest.NS_SASL:
        check_eq(c._failure(el), 'encryption-required',
                 'SASL failure before TLS')
        # and the stream is not authenticated: a bind is not answered
        c.send("<iq type='set' id='b'><bind xmlns='%s'/></iq>" %
               pvtest.NS_BIND)
        try:
            el = c.recv(3 * pvtest.time_factor())
            check(el.get('type') != 'result',
                  'bind succeeded on an unauthenticated stream')
        except (TimeoutError, pvtest.StreamClosed):
            pass
        return
    check_eq(el.tag, '{%s}error' % pvtest.NS_STREAMS,
             'answer to <auth/> before TLS')


@suite.test
def bystanders_work_after_failed_logins():
    srv = suite.shared_server(users=USERS, c2s_require_encryption=True)
    a = srv.login('romeo', resource='a')
    b = srv.login('juliet', resource='b', tls='direct')
    pvtest.message_round_trip(a, b)


if __name__ == '__main__':
    suite.main()
