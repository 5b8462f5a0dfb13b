// Issue #17 (4): during the SIGTERM drain, responses carried no `Connection: close`, idle
// keep-alive connections stayed open, new requests on open connections were accepted and then
// reset at the deadline. Now: /readyz answers 503 from the signal on, every response says
// `Connection: close`, idle keep-alive connections are closed, no new request starts on an
// existing connection, and every request in flight at the signal completes — under load.
import http from 'node:http';
import net from 'node:net';
import { expect, it } from 'vitest';
import { startBackend } from '../helpers/backends.js';
import { pollUntil } from '../helpers/sticky.js';
import { startTether } from '../helpers/tether.js';

interface Outcome {
  sentAt: number;
  status: number;
  connection: string;
  error: string;
}

it('SIGTERM under load: in-flight requests complete with Connection: close, idle connections close, readyz 503, exit 0', async () => {
  const held: http.ServerResponse[] = [];
  const b = await startBackend('app1', (req, res) => {
    req.resume();
    if (req.url!.startsWith('/slow')) held.push(res);
    else res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' }).end('ok');
  });
  const t = await startTether(['--no-demo', '--backend', `app1=127.0.0.1:${b.port}`, '--drain-timeout', '20000', '--sticky', 'none'], { workers: 2 });
  const agents: http.Agent[] = [];
  const idle: net.Socket[] = [];
  try {
    // A load: 4 keep-alive lanes sending requests back to back, each sending time recorded.
    let signalAt = Infinity;
    const outcomes: Outcome[] = [];
    let stopLanes = false;
    const send = (agent: http.Agent, path: string): Promise<Outcome> =>
      new Promise((resolve) => {
        const o: Outcome = { sentAt: Date.now(), status: 0, connection: '', error: '' };
        const req = http.get({ host: '127.0.0.1', port: t.port, path, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve({ ...o, status: res.statusCode!, connection: String(res.headers.connection ?? '') }));
          res.on('error', (err) => resolve({ ...o, error: err.message }));
        });
        req.setTimeout(30_000, () => req.destroy(new Error('timed out')));
        req.on('error', (err: NodeJS.ErrnoException) => resolve({ ...o, error: err.code ?? err.message }));
      });
    const lane = async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      agents.push(agent);
      while (!stopLanes) {
        const o = await send(agent, '/fast');
        outcomes.push(o);
        if (o.error && o.sentAt > signalAt) break; // refused after the signal: the lane is done
      }
    };
    const lanes = [lane(), lane(), lane(), lane()];
    // Idle keep-alive connections, each having served one request.
    for (let i = 0; i < 10; i++) {
      const s = net.connect(t.port, '127.0.0.1');
      s.on('error', () => undefined);
      await new Promise<void>((resolve) => {
        s.once('data', () => resolve());
        s.write('GET /fast HTTP/1.1\r\nHost: h\r\n\r\n');
      });
      idle.push(s);
    }
    const idleClosed = idle.map((s) => new Promise<string>((resolve) => {
      let after = '';
      s.on('data', (d: Buffer) => (after += d.toString('latin1')));
      s.on('close', () => resolve(after));
    }));
    // Requests in flight at the signal: held by the backend.
    const slowAgent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    agents.push(slowAgent);
    const slow = Array.from({ length: 20 }, (_, i) => send(slowAgent, `/slow/${i}`));
    await pollUntil('20 slow requests at the backend', async () => (held.length === 20 ? true : undefined));
    await pollUntil('the load running', async () => (outcomes.length > 200 ? true : undefined));

    signalAt = Date.now();
    t.proc.kill('SIGTERM');
    await pollUntil('/readyz to answer 503', async () => {
      const r = await fetch(`http://127.0.0.1:${t.adminPort}/readyz`, { signal: AbortSignal.timeout(2_000) }).catch(() => null);
      return r?.status === 503 ? true : undefined;
    });
    // Idle keep-alive connections are closed by Tether, with nothing written on them.
    expect(await Promise.all(idleClosed)).toEqual(Array(10).fill(''));
    // The workers learn of the signal a moment after it (a message from the main thread); once
    // the idle connections are closed, they have.
    const drainingAt = Date.now();
    expect(t.proc.exitCode).toBeNull();
    for (const res of held.splice(0)) res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '4' }).end('done');
    const slowOutcomes = await Promise.all(slow);
    for (const o of slowOutcomes) expect(o).toMatchObject({ status: 200, connection: 'close', error: '' });
    stopLanes = true;
    await Promise.all(lanes);
    expect(await t.exited).toBe(0);

    // Every request sent before the signal got its 200; every answer once draining says close.
    const before = outcomes.filter((o) => o.sentAt < signalAt);
    expect(before.filter((o) => o.status !== 200 || o.error)).toEqual([]);
    const answeredAfter = outcomes.filter((o) => o.sentAt >= drainingAt && o.status !== 0);
    for (const o of answeredAfter) expect(o.connection).toBe('close');
    // After the signal, a lane's next request finds the listener closed: refused, not reset.
    for (const o of outcomes.filter((x) => x.sentAt >= signalAt && x.error)) expect(o.error).toBe('ECONNREFUSED');
  } finally {
    for (const a of agents) a.destroy();
    for (const s of idle) s.destroy();
    await t.stop();
    await b.close();
  }
}, 60_000);
