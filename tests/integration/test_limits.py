#!/usr/bin/python3
# Connection limits that need their own servers: the unauthenticated idle
# timeout (c2s_auth_timeout), the byte rate limit (c2s_rate_limit) and the
# throttling of repeated failed logins from one address (auth_failure_limit
# within auth_failure_window).

import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402

suite = pvtest.Suite('limits')
USERS = {'mallory': 'mall0ry-pw', 'alice': 'al1ce-pw', 'bob': 'b0b-pw'}
AUTH_TIMEOUT = 2.0
FAIL_LIMIT = 3
FAIL_WINDOW = 4


def limits_server():
    return suite.shared_server('limits', users=USERS,
                               c2s_auth_timeout='%ds' % AUTH_TIMEOUT,
                               c2s_rate_limit='2K')


@suite.test
def auth_timeout():
    srv = limits_server()
    a = srv.login('alice', resource='idle-bystander')
    b = srv.login('bob', resource='idle-bystander', tls='direct')
    t0 = time.monotonic()
    idle = [srv.client(tls='direct'), srv.client(tls='plain')]
    for c in idle:
        c.open_stream()
    for c in idle:
        check_eq(c.expect_stream_error((AUTH_TIMEOUT + 8) *
                                       pvtest.time_factor()),
                 'connection-timeout', 'idle unauthenticated stream')
    elapsed = time.monotonic() - t0
    check(elapsed >= AUTH_TIMEOUT * 0.75,
          'closed after %.1fs, before c2s_auth_timeout (%.0fs)' %
          (elapsed, AUTH_TIMEOUT))
    # authenticated sessions are not subject to it
    pvtest.message_round_trip(a, b)


@suite.test
def byte_rate_limit():
    srv = limits_server()
    a = srv.login('alice', resource='rate-bystander')
    b = srv.login('bob', resource='rate-bystander', tls='direct')
    c = srv.login('mallory', resource='flood')
    # 64 KiB at once against "2K" per second: results to the server are
    # dropped silently (RFC 6120 §8.2.3), so only the rate is at stake
    pad = 'z' * 900
    burst = ''.join("<iq type='result' id='r%d' to='localhost'>"
                    "<x xmlns='urn:example:pad'>%s</x></iq>" % (i, pad)
                    for i in range(64))
    try:
        c.send(burst)
    except OSError:
        pass
    check_eq(c.expect_stream_error(15 * pvtest.time_factor()),
             'policy-violation', 'stream error for a byte flood')
    pvtest.message_round_trip(a, b)


@suite.test
def failed_auth_throttling():
    srv = suite.shared_server('throttle', users=USERS,
                              auth_failure_limit=FAIL_LIMIT,
                              auth_failure_window='%ds' % FAIL_WINDOW)
    # the attacker comes from 127.0.0.2; 127.0.0.1 must stay unaffected
    for i in range(FAIL_LIMIT):
        c = srv.client(source='127.0.0.2')
        c.connect()
        check_eq(c.auth('mallory', 'wrong-%d' % i), 'not-authorized',
                 'failed attempt %d' % (i + 1))
        c.close()
    t_last = time.monotonic()
    c = srv.client(source='127.0.0.2')
    c.connect()
    check_eq(c.auth('mallory', USERS['mallory']), 'temporary-auth-failure',
             'correct password after %d failures' % FAIL_LIMIT)
    c.close()
    other = srv.login('alice', resource='other-address')
    other.close()
    # after the window the right password works again
    deadline = t_last + (FAIL_WINDOW + 6) * pvtest.time_factor()
    while True:
        c = srv.client(source='127.0.0.2')
        c.connect()
        cond = c.auth('mallory', USERS['mallory'])
        c.close()
        if cond is None:
            break
        check_eq(cond, 'temporary-auth-failure', 'while throttled')
        check(time.monotonic() < deadline,
              'still throttled %.0fs after the last failure (window %ds)'
              % (time.monotonic() - t_last, FAIL_WINDOW))
        time.sleep(0.5)   # polling the window, not waiting for readiness


if __name__ == '__main__':
    suite.main()
