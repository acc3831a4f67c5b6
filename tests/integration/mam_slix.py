#!/usr/bin/python3
# slixmpp side of test_mam.py's interoperability check: logs in, reads the
# archive with slixmpp's own XEP-0313/XEP-0059 plugins (form, forward and
# backward iteration, a 'with' filter) and prints one JSON line with what
# it got. argv[1] is a JSON config (host, port, domain, cafile, user,
# password, with, timeout). Exit 0 only on success.

import asyncio
import json
import logging
import sys

import slixmpp

cfg = json.loads(sys.argv[1])
logging.basicConfig(level=logging.ERROR, stream=sys.stderr)


class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__('%s@%s/slix' % (cfg['user'], cfg['domain']),
                         cfg['password'])
        self.ca_certs = cfg['cafile']
        for p in ('xep_0030', 'xep_0004', 'xep_0059', 'xep_0297',
                  'xep_0313'):
            self.register_plugin(p)
        self.out = {'errors': []}
        self.finished = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self.on_session)

    async def collect(self, **kw):
        bodies = []
        async for msg in self['xep_0313'].iterate(**kw):
            fwd = msg['mam_result']['forwarded']
            bodies.append(fwd['stanza']['body'])
        return bodies

    async def on_session(self, event):
        try:
            form = await self['xep_0313'].get_fields(
                timeout=cfg['timeout'])
            self.out['fields'] = sorted(form.get_fields().keys())
            self.out['forward'] = await self.collect(rsm={'max': 7})
            self.out['backward'] = await self.collect(rsm={'max': 7},
                                                      reverse=True)
            self.out['with'] = await self.collect(
                rsm={'max': 3}, with_jid=slixmpp.JID(cfg['with']))
            self.finished.set_result(True)
        except Exception as e:          # noqa: BLE001
            self.out['errors'].append(repr(e))
            self.finished.set_result(False)


async def run():
    c = Client()
    c.connect((cfg['host'], cfg['port']), force_starttls=True)
    try:
        ok = await asyncio.wait_for(c.finished, cfg['timeout'])
    except asyncio.TimeoutError:
        c.out['errors'].append('timed out')
        ok = False
    try:
        await asyncio.wait_for(c.disconnect(wait=1.0), 5)
    except Exception:                   # noqa: BLE001
        pass
    print(json.dumps(c.out))
    return ok

sys.exit(0 if asyncio.get_event_loop().run_until_complete(run()) else 1)
