/**
 * `amqp-ws`: AMQP 1.0 over WebSocket inside the verified TLS tunnel, the way FlexxAgent reaches
 * Azure Service Bus (flxsbname{tenant}.servicebus.windows.net:443, `/$servicebus/websocket`,
 * subprotocol `AMQPWSB10`). The agent is a rhea client over a `ws` WebSocket on the tunnel's TLS
 * socket: SASL ANONYMOUS (as the Azure SDKs open before CBS), open, a session, a sender and a
 * receiver link on one address; it sends `messages` messages of `messageBytes` and the lab broker
 * (lab service amqp) echoes them back. Checks: connect, tls-interception, pinning, protocol (WS 101
 * with AMQPWSB10, the SASL and AMQP protocol headers both ways, open and attach completed; the
 * frames seen each way are the evidence), payload (every message back byte-identical). The AMQP
 * framing reader and rhea's transport over the WebSocket are agent/amqp-wire.ts.
 */
import { randomBytes } from 'node:crypto';
import rhea, { type Connection, type EventContext, type Message, type Sender } from 'rhea';
import { errorMessage } from '../../errors.ts';
import { sha256 } from '../../lab/lab.ts';
import {
  AMQP_WS_PATH,
  AMQP_WS_SUBPROTOCOL,
  bodyBytes,
  RECEIVED_SHA_PROPERTY,
} from '../../lab/services/amqp.ts';
import { AMQP_HEADER, AmqpTap, escaped, rheaTransport, SASL_HEADER } from '../amqp-wire.ts';
import { openChannel } from '../channel.ts';
import { answerHead, openWebSocket } from '../wsclient.ts';
import { type ExchangeKind, type KindContext, type KindVerdicts, notRun, since } from './types.ts';

const CHECKS = ['connect', 'tls-interception', 'pinning', 'protocol', 'payload'];
const ADDRESS = 'proxycheck-echo';

export const amqpWsKind: ExchangeKind = {
  id: 'amqp-ws',
  options: {
    path: { type: 'string', pattern: '^/' },
    messages: { $ref: '#/$defs/messages' },
    messageBytes: { $ref: '#/$defs/messageBytes' },
  },
  checks: () => CHECKS,
  lab: (x) => [{ port: x.port, transport: 'https' }],
  run: runAmqpWs,
};

interface Sent {
  id: number;
  bytes: number;
  sha256: string;
}

async function runAmqpWs(ctx: KindContext): Promise<KindVerdicts> {
  const out: KindVerdicts = new Map();
  const channel = await openChannel(ctx, out, { dependents: ['protocol', 'payload'] });
  if (!channel) return out;
  const socket = channel.socket;
  const path = ctx.exchange.path ?? AMQP_WS_PATH;
  const url = `wss://${ctx.host}${ctx.port === 443 ? '' : `:${ctx.port}`}${path}`;
  const count = ctx.exchange.messages ?? 5;
  const size = ctx.exchange.messageBytes ?? 1024;
  const t0 = performance.now();

  const open = await openWebSocket(socket, {
    url,
    protocols: [AMQP_WS_SUBPROTOCOL],
    deadlineMs: ctx.timeouts.answerMs,
    deadlineName: 'timeouts.answerMs',
    ...(ctx.exchange.userAgent ? { headers: { 'User-Agent': ctx.exchange.userAgent } } : {}),
  });
  if (!open.ok) {
    socket.destroy();
    out.set('protocol', {
      outcome: 'fail',
      message: open.error,
      evidence: {
        url,
        offeredSubprotocols: [AMQP_WS_SUBPROTOCOL],
        ...(open.answer
          ? { answerHead: answerHead(open.answer), acceptedSubprotocol: open.answer.subprotocol }
          : {}),
      },
      durationMs: open.ms,
    });
    out.set('payload', notRun('the WebSocket upgrade failed', 'protocol'));
    return out;
  }
  const ws = open.ws;
  const up = new AmqpTap();
  const down = new AmqpTap();
  const container = rhea.create_container({ id: `proxycheck-agent-${randomBytes(4).toString('hex')}` });
  const sasl = rhea.sasl.client_mechanisms();
  sasl.enable_anonymous('proxycheck-agent');
  const transport = rheaTransport(ws, url, up, down);

  // Everything rhea tells us, kept for the verdicts; `notify` re-checks whatever step is waiting.
  const seen = {
    connectionOpen: false,
    senderOpen: false,
    receiverOpen: false,
    disconnected: undefined as string | undefined,
    remoteClosed: false,
    wsClosed: false,
    errors: [] as string[],
  };
  const received: Message[] = [];
  let notify = () => {};
  let connection: Connection | undefined;
  let sender: Sender | undefined;

  /** Resolves when `cond` holds; rejects at the deadline (named) or when the connection ends. */
  const until = (cond: () => boolean, deadlineMs: number, name: string, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        notify = () => {};
        reject(new Error(`${what} within ${deadlineMs} ms (${name})`));
      }, deadlineMs);
      const check = () => {
        if (cond()) {
          clearTimeout(timer);
          notify = () => {};
          resolve();
        } else if (seen.disconnected !== undefined) {
          clearTimeout(timer);
          notify = () => {};
          reject(new Error(`${what}: the connection ended (${seen.disconnected})`));
        }
      };
      notify = check;
      check();
    });

  const sent: Sent[] = [];
  let stepError: string | undefined;
  let step = 'AMQP open';
  try {
    connection = container.connect({
      connect: (_port: number, _host: string, _opts: unknown, callback: () => void) => {
        process.nextTick(callback);
        return transport;
      },
      host: ctx.host,
      port: ctx.port,
      hostname: ctx.host,
      sasl_init_hostname: ctx.host,
      sasl_mechanisms: sasl,
      reconnect: false,
    } as never);
    const conn = connection;
    const on = (event: string, fn: (c: EventContext) => void) =>
      conn.on(event as never, (c: EventContext) => {
        fn(c);
        notify();
      });
    on('connection_open', () => {
      seen.connectionOpen = true;
    });
    on('sender_open', () => {
      seen.senderOpen = true;
    });
    on('receiver_open', () => {
      seen.receiverOpen = true;
    });
    on('sendable', () => {});
    on('message', (c) => {
      if (c.message) received.push(c.message);
    });
    on('connection_close', () => {
      seen.remoteClosed = true;
    });
    ws.on('close', () => {
      seen.wsClosed = true;
      notify();
    });
    on('disconnected', (c) => {
      seen.disconnected = c.error ? errorMessage(c.error) : 'closed';
    });
    for (const e of [
      'connection_error',
      'connection_close',
      'session_error',
      'sender_error',
      'receiver_error',
    ])
      on(e, (c) => {
        const err = (c.connection?.error ?? c.session?.error ?? c.sender?.error ?? c.receiver?.error) as
          | { condition?: string; description?: string }
          | undefined;
        if (err) seen.errors.push(`${e}: ${err.condition ?? ''} ${err.description ?? ''}`.trim());
      });
    conn.on('error', (err: unknown) => {
      seen.errors.push(`error: ${errorMessage(err)}`);
      notify();
    });
    conn.on('protocol_error', (err: unknown) => {
      seen.errors.push(`protocol error: ${errorMessage(err)}`);
      notify();
    });

    await until(
      () => seen.connectionOpen,
      ctx.timeouts.answerMs,
      'timeouts.answerMs',
      'AMQP open: no open from the broker',
    );
    step = 'attach';
    sender = conn.open_sender({ target: { address: ADDRESS } });
    conn.open_receiver({ source: { address: ADDRESS } });
    await until(
      () => seen.senderOpen && seen.receiverOpen,
      ctx.timeouts.answerMs,
      'timeouts.answerMs',
      'AMQP attach: the broker did not attach both links',
    );
    step = 'messages';
    for (let i = 1; i <= count; i++) {
      const s = sender;
      await until(
        () => s.sendable(),
        ctx.timeouts.requestMs,
        'timeouts.requestMs',
        `message ${i}: no link credit from the broker`,
      );
      const body = randomBytes(size);
      sent.push({ id: i, bytes: body.length, sha256: sha256(body) });
      s.send({ message_id: i, body: rhea.message.data_section(body) });
    }
    await until(
      () => received.length >= count,
      ctx.timeouts.requestMs,
      'timeouts.requestMs',
      `echo: not all ${count} messages came back`,
    );
    step = 'close';
  } catch (err) {
    stepError = errorMessage(err);
  } finally {
    try {
      if (connection && seen.disconnected === undefined) {
        connection.close();
        await until(
          () => seen.remoteClosed || seen.wsClosed,
          ctx.timeouts.answerMs,
          'timeouts.answerMs',
          'AMQP close: no close from the broker',
        ).catch(() => {});
      }
    } finally {
      ws.terminate();
      socket.destroy();
    }
  }
  const ms = since(t0);

  // protocol
  const upHeaders = up.events.filter((e) => e.startsWith('header '));
  const downHeaders = down.events.filter((e) => e.startsWith('header '));
  const evidence = {
    url,
    answerHead: answerHead(open.answer),
    offeredSubprotocols: [AMQP_WS_SUBPROTOCOL],
    acceptedSubprotocol: open.answer.subprotocol,
    agentSent: {
      firstBytes: up.firstBytesText(),
      firstBytesHex: up.firstBytes(),
      frames: up.events,
      bytes: up.bytes,
    },
    agentReceived: {
      firstBytes: down.firstBytesText(),
      firstBytesHex: down.firstBytes(),
      frames: down.events,
      bytes: down.bytes,
    },
    ...(seen.errors.length ? { amqpErrors: seen.errors } : {}),
    ...(seen.disconnected && step !== 'close' ? { disconnected: seen.disconnected } : {}),
  };
  const problems: string[] = [];
  if (open.answer.subprotocol !== AMQP_WS_SUBPROTOCOL)
    problems.push(`the server chose subprotocol "${open.answer.subprotocol}", not ${AMQP_WS_SUBPROTOCOL}`);
  const want = (list: string[], header: string, who: string) => {
    if (!list.includes(header)) problems.push(`no ${header} from the ${who}`);
  };
  want(upHeaders, 'header SASL 1.0.0', 'agent');
  want(downHeaders, 'header SASL 1.0.0', 'broker');
  want(upHeaders, 'header AMQP 1.0.0', 'agent');
  want(downHeaders, 'header AMQP 1.0.0', 'broker');
  if (!seen.connectionOpen) problems.push('the broker never answered open');
  else if (!(seen.senderOpen && seen.receiverOpen)) problems.push('the broker did not attach both links');
  const before = step === 'AMQP open' || step === 'attach';
  if (problems.length || before) {
    const what = stepError ?? problems.join('; ');
    out.set('protocol', {
      outcome: 'fail',
      message: `AMQP over WebSocket did not complete: ${what}; the agent sent ${up.events.join(', ') || 'no AMQP bytes'} and received ${down.events.join(', ') || 'no AMQP bytes'}`,
      evidence: { ...evidence, problems },
      durationMs: ms,
    });
    out.set('payload', notRun('the AMQP session did not open', 'protocol'));
    return out;
  }
  out.set('protocol', {
    outcome: 'pass',
    message: `"${open.answer.statusLine}" with ${AMQP_WS_SUBPROTOCOL}; SASL header ${escaped(SASL_HEADER)} and AMQP header ${escaped(AMQP_HEADER)} both ways; open and attach completed`,
    evidence,
    durationMs: ms,
  });

  // payload
  const steps = sent.map((s) => {
    const m = received.find((r) => Number(r.message_id) === s.id);
    const back = m ? bodyBytes(m.body) : undefined;
    return {
      message: s.id,
      bytes: s.bytes,
      sentSha256: s.sha256,
      brokerReceivedSha256: m ? String(m.application_properties?.[RECEIVED_SHA_PROPERTY] ?? '') : undefined,
      receivedBytes: back?.length,
      receivedSha256: back ? sha256(back) : undefined,
    };
  });
  let bad: string | undefined;
  for (const s of steps) {
    if (s.receivedSha256 === undefined) {
      bad ??= `message ${s.message} never came back`;
      continue;
    }
    if (s.brokerReceivedSha256 !== s.sentSha256)
      bad ??= `message ${s.message} upstream: the broker received SHA-256 ${String(s.brokerReceivedSha256).slice(0, 16)}…, the agent sent ${s.sentSha256.slice(0, 16)}…`;
    if (s.receivedSha256 !== s.sentSha256)
      bad ??= `message ${s.message} came back with ${s.receivedBytes} bytes, SHA-256 ${s.receivedSha256.slice(0, 16)}…, not the ${s.bytes} bytes ${s.sentSha256.slice(0, 16)}… sent`;
  }
  if (stepError && !bad)
    bad = `the exchange broke after ${received.length} of ${count} messages: ${stepError}`;
  out.set(
    'payload',
    bad
      ? { outcome: 'fail', message: bad, evidence: { steps }, durationMs: ms }
      : {
          outcome: 'pass',
          message: `${count} messages of ${size} bytes echoed through the broker byte-identical (SHA-256 equal both ways)`,
          evidence: { steps },
          durationMs: ms,
        },
  );
  return out;
}
