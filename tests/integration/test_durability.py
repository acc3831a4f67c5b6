#!/usr/bin/python3
# Crash durability (issue 10; DESIGN.md §1): a client streams messages with
# XEP-0198 acknowledgements while palaverd is killed with SIGKILL at random
# moments, 20 times; after every restart, every message the server
# acknowledged (<a h/>) must be in the recipient's archive (XEP-0313) and
# offline store exactly once, nothing may be there twice, and the LMDB
# environment must stay readable (mdb_stat). Every fsync of the server is
# slowed down (an LD_PRELOAD shim built here) so that a commit takes tens
# of milliseconds: an acknowledgement sent before its commit would then
# be lost to the kill, and the test would see it. Set PV_DURABILITY_SEED
# to replay a run; the seed is printed.

import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, NS_CLIENT  # noqa: E402

NS_SM = 'urn:xmpp:sm:3'
NS_MAM = 'urn:xmpp:mam:2'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_FWD = 'urn:xmpp:forward:0'
MODULES = pvtest.CORE_MODULES + ['roster', 'presence', 'offline', 'smacks',
                                 'mam']
USERS = {'writer': 'wr1ter-pw', 'reader': 'r3ader-pw'}
CYCLES = 20
PER_CYCLE_MAX = 2000
BATCH = 10
BODY = re.compile(r'^dur (\d+)-(\d+)$')

suite = pvtest.Suite('durability')


def needs_modules():
    have = pvtest.available_modules(['offline', 'smacks', 'mam'])
    if have != ['offline', 'smacks', 'mam']:
        pvtest.skip('needs mod_offline, mod_smacks and mod_mam')


def sm_login(srv, user, resource):
    c = srv.login(user, resource=resource)
    c.send("<enable xmlns='%s'/>" % NS_SM)
    c.recv_until(lambda e: e.tag == '{%s}enabled' % NS_SM,
                 what='<enabled/>')
    return c


def stream_until_killed(srv, rng, cycle):
    """Sends numbered messages in batches, each followed by <r/>, until
    the server dies under it; returns how many the server acknowledged
    and how many were sent. Even cycles kill right after a random
    acknowledgement (the moment a premature <a/> would be exposed), odd
    ones at a random time."""
    c = sm_login(srv, 'writer', 'w%d' % cycle)
    to = srv.jid('reader')
    proc = srv.proc
    on_ack = rng.randint(1, 40) if cycle % 2 == 0 else None
    killer = None
    if on_ack is None:
        killer = threading.Timer(rng.uniform(0.02, 0.6), proc.kill)
        killer.start()
    acked = sent = n_acks = 0
    try:
        while sent < PER_CYCLE_MAX:
            c.send(''.join(
                "<message to='%s' type='chat' id='d%d-%d'><body>dur %d-%d"
                "</body></message>" % (to, cycle, i, cycle, i)
                for i in range(sent, sent + BATCH)) +
                "<r xmlns='%s'/>" % NS_SM)
            sent += BATCH
            while acked < sent:
                el = c.recv(2.0)
                if el.tag != '{%s}a' % NS_SM:
                    continue
                h = int(el.get('h'))
                check(h <= sent, 'acknowledged %d of %d sent' % (h, sent))
                acked = max(acked, h)
                n_acks += 1
                if n_acks == on_ack:
                    proc.kill()
                    raise pvtest.StreamClosed()
    except (pvtest.StreamClosed, pvtest.TestFailure, OSError,
            TimeoutError):
        pass   # the server is gone: what it acknowledged is what counts
    if killer is not None:
        killer.join()
    proc.kill()
    proc.wait()
    srv.kill()   # reaps it in the harness, records the kill
    c.close()
    return acked, sent


SLOW_SYNC_C = r'''
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <time.h>

static void
slow(void)
{
    struct timespec ts = { 0, 30 * 1000 * 1000 };
    nanosleep(&ts, NULL);
}

#define WRAP(ret, name, params, args)                   \
    ret name params                                     \
    {                                                   \
        static ret (*real) params;                      \
        if (real == NULL)                               \
            *(void **)&real = dlsym(RTLD_NEXT, #name);  \
        slow();                                         \
        return real args;                               \
    }

WRAP(int, fsync, (int fd), (fd))
WRAP(int, fdatasync, (int fd), (fd))
WRAP(int, msync, (void *a, size_t l, int f), (a, l, f))
'''


def slow_sync_env(srv):
    """LD_PRELOAD environment that makes every fsync take 30 ms."""
    cc = shutil.which('cc') or shutil.which('gcc')
    if cc is None:
        pvtest.skip('no C compiler for the slow-fsync shim')
    src = os.path.join(srv.dir, 'slow_sync.c')
    lib = os.path.join(srv.dir, 'slow_sync.so')
    with open(src, 'w') as f:
        f.write(SLOW_SYNC_C)
    subprocess.run([cc, '-shared', '-fPIC', '-O2', '-o', lib, src, '-ldl'],
                   check=True)
    asan = os.environ.get('ASAN_OPTIONS', '')
    return {'LD_PRELOAD': lib,
            'ASAN_OPTIONS': (asan + ':' if asan else '') +
            'verify_asan_link_order=0'}


def lmdb_readable(srv):
    if not shutil.which('mdb_stat'):
        pvtest.skip('mdb_stat (lmdb-utils) not installed')
    r = subprocess.run(['mdb_stat', '-a', srv.data_dir],
                       capture_output=True, text=True)
    check(r.returncode == 0, 'mdb_stat failed after SIGKILL: %s' % r.stderr)


def body_id(text):
    m = BODY.match(text or '')
    return (int(m.group(1)), int(m.group(2))) if m else None


def offline_ids(c):
    """Offline messages delivered on the first available presence."""
    got = Counter()
    c.send('<presence/>')
    while True:
        try:
            el = c.recv(3.0 * pvtest.time_factor())
        except TimeoutError:
            return got
        if el.tag == '{%s}message' % NS_CLIENT:
            i = body_id(el.findtext('{%s}body' % NS_CLIENT))
            if i is not None:
                got[i] += 1


def archive_ids(c):
    """Every message in the reader's archive, paging forward."""
    got = Counter()
    after = ''
    page = 0
    while True:
        page += 1
        qid = 'q%d' % page
        c.send("<iq type='set' id='%s'><query xmlns='%s' queryid='%s'>"
               "<set xmlns='%s'><max>250</max>%s</set></query></iq>"
               % (qid, NS_MAM, qid, NS_RSM, after))
        while True:
            el = c.recv(10.0 * pvtest.time_factor())
            if el.tag == '{%s}iq' % NS_CLIENT and el.get('id') == qid:
                break
            res = el.find('{%s}result' % NS_MAM)
            if res is None or res.get('queryid') != qid:
                continue
            inner = res.find('{%s}forwarded/{%s}message' % (NS_FWD,
                                                              NS_CLIENT))
            if inner is not None:
                i = body_id(inner.findtext('{%s}body' % NS_CLIENT))
                if i is not None:
                    got[i] += 1
        check(el.get('type') == 'result', 'MAM query failed: %s' %
              pvtest.tostr(el))
        fin = el.find('{%s}fin' % NS_MAM)
        last = fin.findtext('{%s}set/{%s}last' % (NS_RSM, NS_RSM))
        if fin.get('complete') in ('true', '1') or last is None:
            return got
        after = '<after>%s</after>' % last


@suite.test
def sigkill_loses_no_acknowledged_message():
    needs_modules()
    seed = int(os.environ.get('PV_DURABILITY_SEED') or time.time())
    print('     seed %d (PV_DURABILITY_SEED to replay)' % seed)
    rng = random.Random(seed)
    # thousands of offline messages go out in one burst at the end
    srv = suite.server(name='durability', users=USERS, modules=MODULES,
                       offline_max_messages='off',
                       c2s_send_queue_max='64M')
    srv.extra_env = slow_sync_env(srv)
    srv.start()
    acked = []
    total_sent = 0
    for cycle in range(CYCLES):
        n_acked, n_sent = stream_until_killed(srv, rng, cycle)
        acked += [(cycle, i) for i in range(n_acked)]
        total_sent += n_sent
        lmdb_readable(srv)
        srv.start()
    print('     %d cycles: %d sent, %d acknowledged' %
          (CYCLES, total_sent, len(acked)))
    check(len(acked) > 0, 'no message was ever acknowledged')
    r = srv.login('reader', resource='check')
    offline = offline_ids(r)
    archive = archive_ids(r)
    r.close()
    for name, got in (('offline', offline), ('archive', archive)):
        lost = [a for a in acked if got[a] == 0]
        dup = [k for k, n in got.items() if n > 1]
        check(not lost, '%d acknowledged messages missing from the %s, '
              'first %s' % (len(lost), name, lost[:5]))
        check(not dup, '%d messages twice in the %s, first %s' %
              (len(dup), name, dup[:5]))


if __name__ == '__main__':
    suite.main()
