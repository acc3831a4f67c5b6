"""XEP-0115 entity capabilities for test clients (PEP +notify), shared by
the PEP, avatar and bookmark tests: a Caps advertisement with a verified
hash, answers to the server's disco#info queries about it, and waiting
for an element while answering them."""

import base64
import hashlib
import time

import pvtest

NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_CAPS = 'http://jabber.org/protocol/caps'
IQ = '{%s}iq' % pvtest.NS_CLIENT


def caps_ver(identities, features):
    """XEP-0115 §5.1 over identities (category, type, name) and features."""
    s = ''.join('%s/%s//%s<' % i for i in sorted(identities))
    s += ''.join('%s<' % f for f in sorted(features))
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


class Caps:
    """A client wanting notifications of the nodes in notify. lie: its ver
    does not match what it answers (the server must not believe it)."""

    def __init__(self, notify, name='pvtest',
                 node='https://palaver.test/client', lie=False):
        self.identities = [('client', 'pc', name)]
        self.features = [NS_INFO] + ['%s+notify' % n for n in notify]
        self.node = node
        self.ver = caps_ver(self.identities, self.features if not lie else
                            self.features + ['x'])

    def element(self):
        return "<c xmlns='%s' hash='sha-1' node='%s' ver='%s'/>" % (
            NS_CAPS, self.node, self.ver)

    def answer(self, iq):
        q = iq.find('{%s}query' % NS_INFO)
        body = ''.join("<identity category='%s' type='%s' name='%s'/>" % i
                       for i in self.identities)
        body += ''.join("<feature var='%s'/>" % f for f in self.features)
        return ("<iq type='result' id='%s' to='%s'><query xmlns='%s' "
                "node='%s'>%s</query></iq>" % (iq.get('id'), iq.get('from'),
                                              NS_INFO, q.get('node'), body))


def pump(c):
    """Answers the server's caps queries waiting in c.pending (c.caps is
    the client's Caps or None); counts them in c.n_caps_queries."""
    caps = getattr(c, 'caps', None)
    i = 0
    while i < len(c.pending):
        e = c.pending[i]
        if e.tag == IQ and e.get('type') == 'get' and caps is not None and \
                e.find('{%s}query' % NS_INFO) is not None:
            c.pending.pop(i)
            c.n_caps_queries = getattr(c, 'n_caps_queries', 0) + 1
            c.send(caps.answer(e))
            continue
        i += 1


def expect(c, pred, timeout=None, what='element'):
    """First queued or arriving element matching pred (others stay
    queued), answering caps queries meanwhile."""
    timeout = c.timeout if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        pump(c)
        for i, e in enumerate(c.pending):
            if pred(e):
                return c.pending.pop(i)
        left = deadline - time.monotonic()
        if left <= 0 or c.eof or c.closed:
            pvtest.fail('%s: no %s within %.1fs; queued: %s' %
                        (c.jid, what, timeout,
                         [pvtest.tostr(e) for e in c.pending] or 'nothing'))
        try:
            c._recv_some(min(left, 0.2))
        except pvtest.StreamClosed:
            pass


_ids = [0]


def iq(c, xml, prefix='q', **kw):
    """Sends an IQ (an id added) and returns its answer."""
    _ids[0] += 1
    iq_id = '%s%d' % (prefix, _ids[0])
    c.send(xml.replace('<iq ', "<iq id='%s' " % iq_id, 1))
    return expect(c, lambda e: e.tag == IQ and e.get('id') == iq_id and
                  e.get('type') in ('result', 'error'),
                  what='answer to iq %s' % iq_id, **kw)
