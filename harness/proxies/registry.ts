import { UsageError } from '../errors.ts';
import { ChainProxy } from './chain.ts';
import { SQUID_FLAVOURS } from './squid/config.ts';
import { SQUID_SUMMARIES, SquidProxy } from './squid/squid.ts';
import type { Runtime } from './toolkit/runtime.ts';
import type { ProxyUnderTest } from './types.ts';

export interface ProxyKindInfo {
  id: string;
  summary: string;
  create(opts: { runtime: Runtime }): ProxyUnderTest;
}

export const PROXY_KINDS: ProxyKindInfo[] = [
  {
    id: 'chain-plain',
    summary: 'in-process proxy-chain, open CONNECT to any port',
    create: () => new ChainProxy(),
  },
  {
    id: 'chain-auth',
    summary: 'in-process proxy-chain with Basic auth (credentials per run)',
    create: () => new ChainProxy({ auth: true }),
  },
  {
    id: 'chain-mitm',
    summary: 'in-process proxy-chain, TLS-intercepting with the corporate inspection CA',
    create: () => new ChainProxy({ mitm: true }),
  },
  ...SQUID_FLAVOURS.map(
    (flavour): ProxyKindInfo => ({
      id: `squid-${flavour}`,
      summary: SQUID_SUMMARIES[flavour],
      create: ({ runtime }) => new SquidProxy({ flavour, runtime }),
    }),
  ),
];

export const DEFAULT_PROXIES = ['chain-plain', 'chain-auth', 'chain-mitm'];

/**
 * Registers a proxy product defined elsewhere (an adapter plus its config renderer, see
 * docs/extending.md); its id must be new. Returns its removal.
 */
export function registerProxyKind(info: ProxyKindInfo): () => void {
  if (PROXY_KINDS.some((k) => k.id === info.id)) throw new Error(`proxy ${info.id} is already registered`);
  PROXY_KINDS.push(info);
  return () => {
    const i = PROXY_KINDS.indexOf(info);
    if (i >= 0) PROXY_KINDS.splice(i, 1);
  };
}

export function proxyById(id: string, opts: { runtime?: Runtime } = {}): ProxyUnderTest {
  const kind = PROXY_KINDS.find((k) => k.id === id);
  if (!kind)
    throw new UsageError(`unknown proxy "${id}" (known: ${PROXY_KINDS.map((k) => k.id).join(', ')})`);
  return kind.create({ runtime: opts.runtime ?? 'auto' });
}
