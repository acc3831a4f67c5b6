#!/usr/bin/python3
# tests/integration/turn_bench.py: TURN relay throughput and added latency
# on loopback. Starts a palaverd with mod_turn (turn_allow_private, a
# known turn_secret), allocates over UDP with the Python client of
# test_turn.py, binds a channel to a UDP peer on 127.0.0.1, and compares
# the same traffic sent directly peer to peer:
#   latency: N ping-pongs (client -> peer -> client), median and p99 RTT
#   throughput: M packets of SIZE bytes client -> peer and peer -> client
#               with at most W in flight (the receiver counts), packets/s,
#               Mbit/s and loss.
# Not part of the test suite (prints figures, asserts nothing beyond the
# relay working). Usage: PV_BUILDDIR=<build> turn_bench.py [N M SIZE]

import os
import socket
import statistics
import sys
import threading
import time

sys.dont_write_bytecode = True
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, '..', 'harness'))
import pvtest  # noqa: E402
import test_turn as tt  # noqa: E402

SECRET = 'bench-secret'


class Path:
    """Sends from the client side to the peer and back, either directly
    or through the relay (ChannelData on channel 0x4000)."""

    def __init__(self, peer, client=None, relay=None):
        self.peer = peer
        self.client = client
        self.relay = relay
        if client is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(('127.0.0.1', 0))
            self.sock.settimeout(2)
            self.back = self.sock.getsockname()
        else:
            self.sock = client.sock
            self.back = relay
        for s in (self.sock, peer):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)

    def send(self, data):
        if self.client is None:
            self.sock.sendto(data, self.peer.getsockname())
        else:
            self.client.send_raw(tt.channel_data(0x4000, data))

    def recv(self):
        data = self.sock.recv(70000)
        return data if self.client is None else data[4:]


def latency(path, n):
    rtts = []
    payload = b'p' * 100
    for _ in range(n):
        t0 = time.perf_counter()
        path.send(payload)
        data, _ = path.peer.recvfrom(70000)
        path.peer.sendto(data, path.back)
        path.recv()
        rtts.append((time.perf_counter() - t0) * 1e6)
    rtts.sort()
    return statistics.median(rtts), rtts[int(len(rtts) * 0.99) - 1]


def throughput(path, m, size, window=64, back=False):
    """client -> peer, or (back) peer -> client."""
    got = [0]
    done = threading.Event()
    rx = path.sock if back else path.peer
    peer_addr = path.back

    def count():
        rx.settimeout(1.0)
        while True:
            try:
                rx.recv(70000)
            except socket.timeout:
                break
            got[0] += 1
            if got[0] == m:
                break
        done.set()

    th = threading.Thread(target=count)
    th.start()
    payload = b't' * size
    t0 = time.perf_counter()
    sent = 0
    while sent < m and not done.is_set():
        if sent - got[0] < window:
            if back:
                path.peer.sendto(payload, peer_addr)
            else:
                path.send(payload)
            sent += 1
        else:
            time.sleep(0)
    th.join()
    dt = time.perf_counter() - t0 - (1.0 if got[0] < m else 0)
    return got[0] / dt, got[0] * size * 8 / dt / 1e6, 1 - got[0] / m


def cpu_seconds(pid):
    """user + system CPU time of a process (Linux /proc)."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    srv = pvtest.Server(name='turn-bench', users={'alice': 'pw'},
                        modules=['disco', 'turn'], listen=tt.listen(),
                        turn_allow_private=True, turn_secret=SECRET,
                        log_level='info')
    srv.start()
    try:
        user = '%d:alice@localhost' % (time.time() + 3600)
        c = tt.TurnClient(srv.host('turn_udp'), srv.port('turn_udp'),
                          username=user,
                          password=tt.rest_password(SECRET, user))
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(('127.0.0.1', 0))
        peer.settimeout(2)
        relay, _ = tt.allocated(c)
        r = c.bind_channel(0x4000, *peer.getsockname())
        assert r.cls == tt.SUCCESS, r.error()
        direct = Path(peer)
        relayed = Path(peer, c, relay)
        print('loopback, %d ping-pongs of 100 bytes, %d packets of %d bytes'
              % (n, m, size))
        d_med, d_p99 = latency(direct, n)
        r_med, r_p99 = latency(relayed, n)
        print('RTT direct   median %7.1f us  p99 %7.1f us' % (d_med, d_p99))
        print('RTT relayed  median %7.1f us  p99 %7.1f us' % (r_med, r_p99))
        print('added by the relay: %.1f us per round trip (two passes '
              'through palaverd)' % (r_med - d_med))
        for back in (False, True):
            for name, p in (('direct ', direct), ('relayed', relayed)):
                cpu0 = cpu_seconds(srv.proc.pid)
                pps, mbit, loss = throughput(p, m, size, back=back)
                cpu = cpu_seconds(srv.proc.pid) - cpu0
                extra = ''
                if p is relayed:
                    # the Python sender is the bottleneck: palaverd's own
                    # CPU per packet bounds what the relay could do
                    extra = ', palaverd %.1f us CPU/packet (~%.0f k '\
                            'packets/s per core)' % (
                                cpu / m * 1e6, m / cpu / 1e3 if cpu else 0)
                print('%s %s %9.0f packets/s %8.1f Mbit/s loss %.2f%%%s'
                      % ('peer->client' if back else 'client->peer', name,
                         pps, mbit, loss * 100, extra))
        c.refresh(0)
        c.close()
        peer.close()
    finally:
        problems = srv.finish()
        if problems:
            print('server problems:', problems)
        srv.cleanup()


if __name__ == '__main__':
    main()
