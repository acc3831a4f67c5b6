#!/usr/bin/python3
# SIGTERM (CONTRACTS.md §1): every stream, authenticated or not, gets
# <system-shutdown/>; palaverd exits 0; a restart on the same data works.

import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check_eq  # noqa: E402

suite = pvtest.Suite('shutdown')
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw'}


@suite.test
def sigterm_sends_system_shutdown():
    srv = suite.server(users=USERS)
    srv.start()
    a = srv.login('alice', resource='a')
    b = srv.login('bob', resource='b', tls='direct')
    pvtest.message_round_trip(a, b)
    pending = srv.client(tls='direct')
    pending.open_stream()
    check_eq(srv.stop(), 0, 'exit code after SIGTERM')
    for name, c in (('alice', a), ('bob', b), ('unauthenticated', pending)):
        check_eq(c.expect_stream_error(), 'system-shutdown',
                 'stream error for %s' % name)
    # same data directory: the accounts survive a restart
    srv.start()
    a = srv.login('alice', resource='again')
    b = srv.login('bob', resource='again', tls='direct')
    pvtest.message_round_trip(a, b)
    check_eq(srv.stop(), 0, 'exit code after the second SIGTERM')


if __name__ == '__main__':
    suite.main()
