import t from 'tap';
import { HeadTap } from '../harness/lab/headtap.ts';

function feedAll(tap: HeadTap, data: string, chunk = 3): void {
  const b = Buffer.from(data, 'latin1');
  for (let i = 0; i < b.length; i += chunk) tap.feed(b.subarray(i, i + chunk));
}

t.test('cuts out heads of pipelined requests, skipping content-length and chunked bodies', async (t) => {
  const a = 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n';
  const b = 'POST /b HTTP/1.1\r\nhost:x\r\nTransfer-Encoding: chunked\r\n\r\n';
  const c = 'GET /c HTTP/1.1\r\nX-Odd:  spaced \r\n\r\n';
  const tap = new HeadTap();
  feedAll(tap, `${a}hello${b}3\r\nabc\r\n0\r\n\r\n${c}`);
  t.equal(tap.shift()?.toString('latin1'), a);
  t.equal(tap.shift()?.toString('latin1'), b);
  t.equal(tap.shift()?.toString('latin1'), c, 'whitespace kept exactly');
  t.equal(tap.shift(), undefined);
});

t.test('a body that looks like a head is not taken for one', async (t) => {
  const body = 'GET /fake HTTP/1.1\r\n\r\n';
  const tap = new HeadTap();
  feedAll(tap, `POST /x HTTP/1.1\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 7);
  t.match(tap.shift()?.toString('latin1'), /^POST \/x/);
  t.equal(tap.shift(), undefined);
});

t.test('an upgrade turns the tap off', async (t) => {
  const tap = new HeadTap();
  feedAll(tap, 'GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET /not-http HTTP/1.1\r\n\r\n');
  t.ok(tap.shift());
  t.equal(tap.shift(), undefined);
});
