#!/usr/bin/env node
// Drives Converse.js (index.html) in Debian's headless Chromium through
// playwright-core for tests/integration/test_browser.py: serves this
// directory on 127.0.0.1, logs in over WebSocket or BOSH, opens the chat
// with the peer from the roster, sends a message through the text area,
// waits for the peer's answer in the chat, takes a screenshot.
// Exit 0 on success, 1 with a "drive: FAIL ..." line otherwise, 2 usage.
//
// node drive.js --mode websocket|bosh --url URL --jid JID --password PW
//     --peer JID --send TEXT --expect TEXT --screenshot FILE.png
//     [--bye TEXT] [--timeout MS] [--log FILE] [--chromium PATH]
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const { chromium } = require('playwright-core');

const ROOT = __dirname;
const TYPES = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.mjs': 'text/javascript; charset=utf-8',
    '.css': 'text/css; charset=utf-8',
    '.json': 'application/json',
    '.wasm': 'application/wasm',
    '.svg': 'image/svg+xml',
    '.png': 'image/png',
    '.ico': 'image/x-icon',
    '.woff': 'font/woff',
    '.woff2': 'font/woff2',
    '.ttf': 'font/ttf',
    '.mp3': 'audio/mpeg',
    '.ogg': 'audio/ogg',
    '.map': 'application/json',
};

function parseArgs(argv) {
    const o = { timeout: 60000, chromium: '/usr/bin/chromium' };
    for (let i = 0; i < argv.length; i += 2) {
        const k = argv[i];
        const v = argv[i + 1];
        if (!k.startsWith('--') || v === undefined)
            usage('bad argument ' + k);
        o[k.slice(2)] = v;
    }
    for (const k of ['mode', 'url', 'jid', 'password', 'peer', 'send',
                     'expect', 'screenshot'])
        if (!o[k])
            usage('missing --' + k);
    if (o.mode !== 'websocket' && o.mode !== 'bosh')
        usage('--mode must be websocket or bosh');
    o.timeout = parseInt(o.timeout, 10);
    return o;
}

function usage(msg) {
    process.stderr.write('drive: ' + msg + '\nusage: node drive.js --mode ' +
        'websocket|bosh --url URL --jid JID --password PW --peer JID ' +
        '--send TEXT --expect TEXT --screenshot FILE [--bye TEXT] ' +
        '[--timeout MS] ' +
        '[--log FILE] [--chromium PATH]\n');
    process.exit(2);
}

let logStream = null;
function log(line) {
    const s = new Date().toISOString() + ' ' + line + '\n';
    if (logStream)
        logStream.write(s);
}

function say(line) {
    // progress for the test (it reads stdout line by line)
    process.stdout.write('drive: ' + line + '\n');
    log('drive: ' + line);
}

// A static file server for this directory only: Converse's chunks, CSS,
// fonts and images come from node_modules, never from the network.
function startServer() {
    const server = http.createServer((req, res) => {
        let p;
        try {
            p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
        } catch (e) {
            res.writeHead(400);
            res.end();
            return;
        }
        if (p === '/')
            p = '/index.html';
        const file = path.join(ROOT, path.normalize(p));
        if (!file.startsWith(ROOT + path.sep)) {
            res.writeHead(403);
            res.end();
            return;
        }
        fs.readFile(file, (err, data) => {
            if (err) {
                log('static 404 ' + p);
                res.writeHead(404);
                res.end();
                return;
            }
            res.writeHead(200, {
                'Content-Type': TYPES[path.extname(file)] ||
                    'application/octet-stream',
                'Cache-Control': 'no-store',
            });
            res.end(data);
        });
    });
    return new Promise((resolve, reject) => {
        server.on('error', reject);
        server.listen(0, '127.0.0.1', () => resolve(server));
    });
}

class Failure extends Error {}

async function waitFor(page, what, fn, arg, timeout) {
    try {
        await page.waitForFunction(fn, arg, { timeout, polling: 100 });
    } catch (e) {
        const state = await page.evaluate(() => ({
            events: window.pvEvents || [],
            status: window.pvConverse && window.pvConverse.state &&
                window.pvConverse.state.connfeedback ?
                window.pvConverse.state.connfeedback.get('message') : null,
        })).catch(() => ({}));
        throw new Failure('timed out (' + timeout + ' ms) waiting for ' +
            what + '; Converse events ' + JSON.stringify(state.events) +
            ', connection feedback ' + JSON.stringify(state.status));
    }
}

// Types text into the chat's text area, presses Enter and waits for the
// message to show in the chat (Converse sent it).
async function sendText(page, box, textarea, text, timeout) {
    await page.fill(textarea, text);
    await page.press(textarea, 'Enter');
    await waitFor(page, 'the sent message "' + text + '" in the chat',
        (a) => [...document.querySelectorAll(a.box +
            ' .chat-msg__text')].some((e) =>
            e.textContent.includes(a.text)),
        { box, text }, timeout);
}

async function run(o) {
    if (o.log)
        logStream = fs.createWriteStream(o.log, { flags: 'a' });
    const server = await startServer();
    const base = 'http://127.0.0.1:' + server.address().port + '/';
    say('serving ' + ROOT + ' at ' + base);
    const browser = await chromium.launch({
        executablePath: o.chromium,
        headless: true,
        // root in CI/containers: no sandbox; no GPU on a server
        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
        timeout: o.timeout,
    });
    say('chromium ' + browser.version());
    const blocked = [];
    let pageErrors = 0;
    let page = null;
    try {
        const context = await browser.newContext({
            viewport: { width: 1280, height: 800 },
            locale: 'en-US',
        });
        // nothing outside 127.0.0.1: a request elsewhere is aborted and
        // reported (the test must not depend on the internet)
        await context.route('**/*', (route) => {
            const u = new URL(route.request().url());
            if (u.hostname === '127.0.0.1' || u.protocol === 'data:' ||
                u.protocol === 'blob:')
                return route.continue();
            blocked.push(u.href);
            log('blocked ' + u.href);
            return route.abort();
        });
        page = await context.newPage();
        page.on('console', (m) => log('console.' + m.type() + ' ' +
                                      m.text()));
        page.on('pageerror', (e) => {
            pageErrors++;
            log('pageerror ' + e.message);
        });
        page.on('websocket', (ws) => {
            log('websocket ' + ws.url());
            ws.on('framesent', (f) => log('ws> ' + f.payload));
            ws.on('framereceived', (f) => log('ws< ' + f.payload));
            ws.on('close', () => log('websocket closed'));
        });
        page.on('request', (r) => {
            if (r.url().startsWith(o.url))
                log('bosh> ' + (r.postData() || ''));
        });
        page.on('response', async (r) => {
            if (r.url().startsWith(o.url)) {
                const body = await r.text().catch(() => '');
                log('bosh< ' + r.status() + ' ' + body);
            }
        });

        const q = new URLSearchParams({
            mode: o.mode, url: o.url, jid: o.jid, password: o.password,
            loglevel: o.log ? 'debug' : 'info',
        });
        await page.goto(base + 'index.html?' + q.toString(),
                        { timeout: o.timeout });
        say('page loaded, logging in as ' + o.jid + ' over ' + o.mode +
            ' ' + o.url);

        await waitFor(page, 'the XMPP connection (Converse "connected")',
            () => (window.pvEvents || []).includes('connected') ||
                (window.pvEvents || []).includes('disconnected'),
            null, o.timeout);
        const events = await page.evaluate(() => window.pvEvents);
        if (!events.includes('connected'))
            throw new Failure('Converse disconnected before logging in: ' +
                              JSON.stringify(events));
        const bound = await page.evaluate(
            () => window.pvConverse.session.get('jid'));
        say('logged in as ' + bound);
        if (!bound || bound.split('/')[0] !== o.jid)
            throw new Failure('bound JID ' + bound + ' is not ' + o.jid);
        const transport = await page.evaluate(
            () => window.pvConverse.api.connection.get().service);
        if (transport !== o.url)
            throw new Failure('connected through ' + transport + ', not ' +
                              o.url);

        // the peer is in the roster (the test subscribed both ways) and
        // shows as online once its libstrophe client sent presence
        const item = 'a.open-chat[data-jid="' + o.peer + '"]';
        await waitFor(page, 'roster item ' + o.peer,
            (sel) => !!document.querySelector(sel), item, o.timeout);
        say('roster shows ' + o.peer);
        // its presence reaches the browser: the roster marks it online
        await waitFor(page, o.peer + ' online in the roster',
            (sel) => !!document.querySelector(sel +
                ' .contact-name--online'), item, o.timeout);
        say(o.peer + ' is online');
        await page.click(item);
        const box = 'converse-chat[jid="' + o.peer + '"]';
        const textarea = box + ' textarea.chat-textarea';
        await page.waitForSelector(textarea, { timeout: o.timeout });
        await sendText(page, box, textarea, o.send, o.timeout);
        say('SENT ' + o.send);

        await waitFor(page, 'the peer\'s message "' + o.expect + '"',
            (a) => [...document.querySelectorAll(a.box +
                ' .chat-msg__text')].some((e) =>
                e.textContent.includes(a.text)),
            { box, text: o.expect }, o.timeout);
        say('RECEIVED ' + o.expect);
        // let the UI settle (fonts, scroll) before the picture
        await page.waitForTimeout(500);
        await page.screenshot({ path: o.screenshot, fullPage: false });
        say('screenshot ' + o.screenshot);
        if (o.bye) {
            // tells the peer it may go: it stayed online for the picture
            await sendText(page, box, textarea, o.bye, o.timeout);
            say('SENT ' + o.bye);
            // the peer leaves when it got it: then it was really sent
            // (over BOSH it may still sit in Converse's queue otherwise)
            await waitFor(page, o.peer + ' offline after the last message',
                (sel) => !!document.querySelector(sel +
                    ' .contact-name--offline'), item, o.timeout);
            say(o.peer + ' went offline');
        }
        if (blocked.length)
            say('blocked ' + blocked.length + ' external request(s): ' +
                blocked.slice(0, 5).join(' '));
        if (pageErrors)
            say(pageErrors + ' uncaught page error(s), see the log');
        await page.evaluate(() => window.pvConverse.api.user.logout())
            .catch(() => {});
        await context.close();
    } catch (e) {
        if (page) {
            // what the user would have seen, for the failure report
            const shot = o.screenshot.replace(/\.png$/, '') + '-failed.png';
            await page.screenshot({ path: shot }).then(
                () => say('failure screenshot ' + shot), () => {});
        }
        throw e;
    } finally {
        await browser.close().catch(() => {});
        server.close();
    }
}

async function main() {
    const o = parseArgs(process.argv.slice(2));
    const killer = setTimeout(() => {
        say('FAIL overall deadline passed');
        process.exit(1);
    }, o.timeout * 3);
    try {
        await run(o);
    } catch (e) {
        if (e instanceof Failure)
            say('FAIL ' + e.message);
        else
            say('FAIL ' + (e && e.stack ? e.stack : e));
        if (logStream)
            await new Promise((r) => logStream.end(r));
        process.exit(1);
    }
    clearTimeout(killer);
    say('PASS');
    if (logStream)
        await new Promise((r) => logStream.end(r));
    process.exit(0);
}

main();
