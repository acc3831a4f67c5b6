#!/usr/bin/python3
# bench/mam_query.py: time to answer a XEP-0313 query for the latest page
# of a big archive, on any XMPP server listening on loopback. Fills the
# archive of one account with N chat messages from a second account
# (paced: the recipient drains each batch), then asks for the newest
# --page items (RSM <before/>) --queries times and prints one JSON line.
# Accounts are registered in-band (XEP-0077) when they do not exist yet.
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'tests', 'harness'))
import pvtest  # noqa: E402

NS_MAM = 'urn:xmpp:mam:2'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_REG = 'jabber:iq:register'


def client(args):
    return pvtest.RawClient(args.host, args.port, args.domain,
                            cafile=args.cafile, timeout=args.timeout)


def register(args, user, password):
    c = client(args)
    c.connect()
    c.send("<iq type='set' id='reg1'><query xmlns='%s'><username>%s"
           "</username><password>%s</password></query></iq>"
           % (NS_REG, user, password))
    el = c.recv_until(lambda e: e.tag.endswith('}iq'), args.timeout)
    c.close()
    return el.get('type') == 'result'


def login(args, user, password, resource):
    c = client(args)
    c.login(user, password, resource=resource)
    return c


def is_message(el):
    return el.tag == '{jabber:client}message'


def fill(args, rcpt, sender):
    to = '%s@%s' % (args.user, args.domain)
    t0 = time.perf_counter()
    sent = 0
    while sent < args.messages:
        n = min(args.batch, args.messages - sent)
        sender.send(''.join(
            "<message to='%s' type='chat' id='b%d'><body>mam bench %d"
            "</body></message>" % (to, i, i)
            for i in range(sent, sent + n)))
        got = 0
        while got < n:
            if is_message(rcpt.recv(args.timeout)):
                got += 1
        sent += n
    return args.messages / (time.perf_counter() - t0)


def query(args, c, qid):
    c.send("<iq type='set' id='%s'><query xmlns='%s' queryid='%s'>"
           "<set xmlns='%s'><max>%d</max><before/></set></query></iq>"
           % (qid, NS_MAM, qid, NS_RSM, args.page))
    t0 = time.perf_counter()
    results = 0
    while True:
        el = c.recv(args.timeout)
        if is_message(el) and el.find('{%s}result' % NS_MAM) is not None:
            results += 1
        elif el.tag == '{jabber:client}iq' and el.get('id') == qid:
            ms = (time.perf_counter() - t0) * 1000.0
            if el.get('type') != 'result':
                raise SystemExit('query failed: %s' % pvtest.tostr(el))
            return ms, results


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--domain', default='bench.test')
    ap.add_argument('--name', default='server')
    ap.add_argument('--cafile', help="the server's certificate (PEM)")
    ap.add_argument('--user', default='mamuser1')
    ap.add_argument('--peer', default='mamuser2')
    ap.add_argument('--password', default='mam-bench-pw')
    ap.add_argument('--messages', type=int, default=100000)
    ap.add_argument('--batch', type=int, default=500)
    ap.add_argument('--page', type=int, default=50)
    ap.add_argument('--queries', type=int, default=30)
    ap.add_argument('--timeout', type=float, default=120.0)
    ap.add_argument('--no-fill', action='store_true',
                    help='the archive is already filled')
    args = ap.parse_args()

    for u in (args.user, args.peer):
        register(args, u, args.password)
    rcpt = login(args, args.user, args.password, 'reader')
    rcpt.send('<presence/>')
    fill_rate = None
    if not args.no_fill:
        sender = login(args, args.peer, args.password, 'writer')
        fill_rate = fill(args, rcpt, sender)
        sender.close()
    times = []
    counts = set()
    for i in range(args.queries):
        ms, n = query(args, rcpt, 'mq%d' % i)
        times.append(ms)
        counts.add(n)
    rcpt.close()
    times.sort()
    print(json.dumps({
        'server': args.name, 'scenario': 'mamquery',
        'archive': args.messages, 'page': args.page,
        'results_per_page': sorted(counts),
        'p50_ms': round(statistics.median(times), 3),
        'p90_ms': round(times[int(len(times) * 0.9) - 1], 3),
        'max_ms': round(times[-1], 3),
        'fill_per_s': round(fill_rate, 1) if fill_rate else None,
    }))


if __name__ == '__main__':
    main()
