#!/usr/bin/python3
# palaverctl account commands (CONTRACTS.md §1): in-process while palaverd is
# stopped, over the control socket while it runs; adduser/passwd/deluser/
# users round trip, and a deleted user can no longer log in.

import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402

suite = pvtest.Suite('palaverctl')
state = {}


def listed(srv, user):
    out = srv.ctl('users', srv.domain).stdout.split()
    return user in out or '%s@%s' % (user, srv.domain) in out


def auth(srv, user, pw):
    c = srv.client()
    c.connect()
    cond = c.auth(user, pw)
    c.close()
    return cond


@suite.test
def offline_adduser_and_users():
    srv = suite.server(users={'bob': 'b0b-pw'})
    state['srv'] = srv
    srv.ctl('adduser', 'alice@' + srv.domain, input='al1ce-pw\n')
    check(listed(srv, 'alice') and listed(srv, 'bob'),
          'users does not list alice and bob')
    r = srv.ctl('adduser', 'alice@' + srv.domain, input='other\n',
                check=False)
    check(r.returncode != 0, 'adduser of an existing account succeeded')
    srv.ctl('adduser', 'carol@' + srv.domain, input='car0l-pw\n')
    srv.ctl('deluser', 'carol@' + srv.domain)
    check(not listed(srv, 'carol'), 'offline deluser left carol listed')
    r = srv.ctl('check', 'config', check=False)
    check_eq(r.returncode, 0, 'check config: %s%s' % (r.stdout, r.stderr))
    srv.start()
    check_eq(auth(srv, 'alice', 'al1ce-pw'), None, 'login of alice')
    check_eq(auth(srv, 'carol', 'car0l-pw'), 'not-authorized',
             'login of a user deleted offline')


@suite.test
def check_dns():
    # the resolver of s2s with the file's settings: an override answers
    # without DNS, a special-use name is refused without asking anyone
    srv = suite.server(name='ctl-dns', s2s_override=[
        {'domain': 'peer.example', 'target': ['127.0.0.3:5269',
                                              'tls://127.0.0.3:5270']}])
    r = srv.ctl('check', 'dns', 'peer.example', check=False)
    check_eq(r.returncode, 0, 'check dns peer.example: %s%s' %
             (r.stdout, r.stderr))
    check('127.0.0.3 port 5269 starttls' in r.stdout and
          '127.0.0.3 port 5270 direct-tls' in r.stdout,
          'override candidates missing: %s' % r.stdout)
    r = srv.ctl('check', 'dns', 'nothing.invalid', check=False)
    check(r.returncode != 0 and 'bad-name' in r.stdout,
          'nothing.invalid resolved: %d %s' % (r.returncode, r.stdout))


@suite.test
def online_passwd():
    srv = state.get('srv') or pvtest.skip('needs offline_adduser_and_users')
    srv.ctl('passwd', 'alice@' + srv.domain, input='n3w-pw\n')
    check_eq(auth(srv, 'alice', 'al1ce-pw'), 'not-authorized',
             'old password after passwd')
    check_eq(auth(srv, 'alice', 'n3w-pw'), None, 'new password after passwd')


@suite.test
def online_adduser_deluser():
    srv = state.get('srv') or pvtest.skip('needs offline_adduser_and_users')
    srv.ctl('adduser', 'dave@' + srv.domain, input='d4ve-pw\n')
    check(listed(srv, 'dave'), 'users does not list dave')
    dave = srv.login('dave', 'd4ve-pw', resource='doomed')
    bob = srv.login('bob', resource='witness')
    pvtest.message_round_trip(dave, bob)
    srv.ctl('deluser', 'dave@' + srv.domain)
    check(not listed(srv, 'dave'), 'users still lists dave after deluser')
    check_eq(auth(srv, 'dave', 'd4ve-pw'), 'not-authorized',
             'login of a deleted user')
    # the user-deleted event closes the live session (CONTRACTS.md §1)
    check(dave.wait_closed(10 * pvtest.time_factor()),
          'session of the deleted user still open')


if __name__ == '__main__':
    suite.main()
