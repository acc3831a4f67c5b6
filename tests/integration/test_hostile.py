#!/usr/bin/python3
# Hostile input: each case must close THAT stream with the right stream
# error (RFC 6120 §4.9.3, §11.1 restricted XML) while two bystander sessions
# on the same server keep working (a message round trip after every case).
# One shared server with small, explicit limits.

import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check_eq  # noqa: E402

suite = pvtest.Suite('hostile')
USERS = {'mallory': 'mall0ry-pw', 'alice': 'al1ce-pw', 'bob': 'b0b-pw'}
MAX_STANZA = 16 * 1024
MAX_DEPTH = 16
STREAM_NS = "xmlns:stream='http://etherx.jabber.org/streams'"
HEADER = ("<stream:stream xmlns='jabber:client' %s to='localhost' "
          "version='1.0'>" % STREAM_NS)

state = {}


def server():
    srv = suite.shared_server(users=USERS,
                              c2s_max_stanza_size='%dK' % (MAX_STANZA // 1024),
                              xml_max_depth=MAX_DEPTH)
    if state.get('srv') is not srv:
        state['srv'] = srv
        state['a'] = srv.login('alice', resource='bystander')
        state['b'] = srv.login('bob', resource='bystander', tls='direct')
    return srv


def bystanders_ok():
    pvtest.message_round_trip(state['a'], state['b'])


def pre_auth(name, payload, want, tls='direct'):
    """payload replaces the stream header on a fresh stream."""
    def test():
        srv = server()
        c = srv.client(tls=tls)
        c._reset_parser()
        c.send(payload)
        expect(c, want, name)
        bystanders_ok()
    test.__name__ = name
    suite.test(test)


def expect(c, want, name):
    got = c.expect_stream_error()
    if isinstance(want, tuple):
        pvtest.check(got in want, 'stream error for %s: expected one of %s,'
                     ' got %r' % (name, want, got))
    else:
        check_eq(got, want, 'stream error for ' + name)


def post_auth(name, payload, want):
    """payload is sent by an authenticated session."""
    def test():
        srv = server()
        c = srv.login('mallory', resource=name)
        c.send(payload() if callable(payload) else payload)
        expect(c, want, name)
        bystanders_ok()
    test.__name__ = name
    suite.test(test)


LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' +
          ''.join('<!ENTITY lol%d "%s">' % (i, ('&lol%s;' % (
              i - 1 if i > 1 else '')) * 10) for i in range(1, 10)) +
          ']>' + HEADER.replace("to='localhost'", "to='localhost' x='&lol9;'"))

pre_auth('doctype_in_header',
         "<?xml version='1.0'?><!DOCTYPE stream:stream>" + HEADER,
         'restricted-xml')
pre_auth('doctype_in_header_starttls_port',
         "<?xml version='1.0'?><!DOCTYPE stream:stream>" + HEADER,
         'restricted-xml', tls='plain')
pre_auth('entity_declaration',
         "<?xml version='1.0'?><!DOCTYPE s [<!ENTITY x 'y'>]>" + HEADER,
         'restricted-xml')
pre_auth('billion_laughs', LAUGHS, 'restricted-xml')
pre_auth('wrong_stream_namespace',
         "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
         "xmlns:stream='http://example.com/not-streams' to='localhost' "
         "version='1.0'>", 'invalid-namespace')
pre_auth('unknown_host',
         "<?xml version='1.0'?>" + HEADER.replace("to='localhost'",
                                                  "to='unknown.example'"),
         'host-unknown')
pre_auth('comment_before_auth', HEADER + "<!-- hello -->", 'restricted-xml')

post_auth('comment', "<!-- a comment -->", 'restricted-xml')
post_auth('processing_instruction', "<?evil instruction?>",
          'restricted-xml')
# RFC 6120 §11.1: any DOCTYPE or entity declaration is restricted XML,
# also inside the stream where expat only sees a syntax error
post_auth('doctype_in_stream', "<!DOCTYPE x>", 'restricted-xml')
post_auth('entity_declaration_in_stream', "<!ENTITY x 'y'>",
          'restricted-xml')
# an undefined entity reference is a well-formedness error
post_auth('internal_entity_reference',
          "<message to='alice@localhost'><body>&amp;&foo;</body></message>",
          ('restricted-xml', 'not-well-formed'))
post_auth('not_well_formed',
          "<message to='alice@localhost'><body>x</bodyy></message>",
          'not-well-formed')
post_auth('invalid_utf8',
          b"<message to='alice@localhost'><body>\xc3\x28\xff\xfe</body>"
          b"</message>", 'not-well-formed')
post_auth('stanza_too_large',
          lambda: "<message to='alice@localhost'><body>%s</body></message>"
          % ('x' * (MAX_STANZA + 4096)), 'policy-violation')
post_auth('too_deep',
          lambda: "<message to='alice@localhost'>%s%s</message>" %
          ("<x xmlns='urn:example:deep'>" * (MAX_DEPTH * 4),
           '</x>' * (MAX_DEPTH * 4)), 'policy-violation')


@suite.test
def unclosed_large_stanza_in_chunks():
    # the limit holds for a stanza that never ends, fed slowly
    srv = server()
    c = srv.login('mallory', resource='chunks')
    c.send("<message to='alice@localhost'><body>")
    sent = 0
    try:
        while sent < MAX_STANZA * 4:
            c.send('y' * 1024)
            sent += 1024
    except OSError:
        pass
    check_eq(c.expect_stream_error(), 'policy-violation',
             'stream error for an endless stanza')
    bystanders_ok()


if __name__ == '__main__':
    suite.main()
