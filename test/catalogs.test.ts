/**
 * The endpoint catalogs against the vendor seed documents they come from: every catalog validates,
 * every URL the seeds name (000, 001, 003, 004) is a row, every port of the Kaspersky (002) and
 * ESET (003) texts is a row with the right protocol, Flexxible regions and products match the
 * seeds' tables, and host parameters resolve (or fail with a UsageError naming the placeholder).
 * The seed texts are read from disk: a catalog that drops a row, or a seed that gains one, fails.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { UsageError } from '../harness/errors.ts';
import {
  type Catalog,
  type CatalogEndpoint,
  loadScenarios,
  missingParams,
  placeholders,
  resolveHost,
  SCENARIOS_DIR,
  validate,
} from '../harness/scenarios.ts';
import { requireComponent } from './helpers/requirements.ts';

// The seed documents ship with the scenarios (scenarios/seeds/, a copy of the project's
// ../shared/seeds): every catalog row's `source` names one of them.
const SEEDS_DIR = process.env.PROXYCHECK_SEEDS ?? join(SCENARIOS_DIR, 'seeds');
const SHARED_SEEDS = fileURLToPath(new URL('../../shared/seeds/', import.meta.url));
const SEED = {
  flexx25: '000_77333517a4595425.txt',
  flexxEn: '001_943bd8e4403e643e.txt',
  kaspersky: '002_91a244efcc7c778a.txt',
  eset: '003_e61d12c4c388e9d9.txt',
  symantec: '004_b474c1d17c4b4006.txt',
} as const;

const set = loadScenarios();
const catalogs = [...set.catalogs.values()];
const rows = (id: string): CatalogEndpoint[] => set.catalogs.get(id)?.endpoints ?? [];
const proto = (e: CatalogEndpoint) => (e.transport === 'udp' ? 'udp' : 'tcp');
const seedsProblem = existsSync(join(SEEDS_DIR, 'README.md'))
  ? undefined
  : `no seed documents at ${SEEDS_DIR} (set PROXYCHECK_SEEDS)`;
const seed = (file: string) => readFileSync(join(SEEDS_DIR, file), 'utf8');

t.test('every catalog file validates against catalog.schema.json and loads', async (t) => {
  const dir = join(SCENARIOS_DIR, 'catalogs');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  t.same(files.sort(), ['eset.yaml', 'flexxible.yaml', 'kaspersky.yaml', 'symantec.yaml']);
  for (const f of files) {
    const data = validate<Catalog>('catalog', parseYaml(readFileSync(join(dir, f), 'utf8')), f);
    t.equal(`${data.id}.yaml`, f, `${f}: id matches the file name`);
    t.ok(set.catalogs.has(data.id), `${f} is in the loaded set`);
  }
});

t.test('rows: unique by (host, port, TCP/UDP), out-of-scope always explained, UDP never agent', async (t) => {
  const seen = new Map<string, string>();
  for (const c of catalogs) {
    for (const e of c.endpoints) {
      const key = `${e.host}:${e.port}/${proto(e)}`;
      t.notOk(seen.has(key), `${key} only once (also in ${seen.get(key)})`);
      seen.set(key, c.id);
      if (e.scope === 'out-of-scope') t.ok(e.scopeReason && e.scopeReason.length > 10, `${key}: scopeReason`);
      if (e.transport === 'udp') {
        t.equal(e.scope, 'out-of-scope', `${key}: UDP is out of scope`);
        t.match(e.scopeReason, /UDP cannot cross an HTTP proxy/, `${key}: says why`);
      }
    }
  }
});

t.test('the schema and loader reject bad catalogs', async (t) => {
  const base = {
    host: 'a.proxycheck.test',
    port: 443,
    transport: 'https',
    purpose: 'test row',
    mustNotInspect: false,
    pinned: false,
    source: [SEED.flexx25],
  };
  const cat = (endpoints: unknown[], extra: Record<string, unknown> = {}) => ({
    id: 'x',
    vendor: 'x',
    ...extra,
    endpoints,
  });
  const bad: Array<[string, unknown, RegExp]> = [
    ['out-of-scope without scopeReason', cat([{ ...base, scope: 'out-of-scope' }]), /scopeReason/],
    ['UDP in agent scope', cat([{ ...base, transport: 'udp' }]), /scope/],
    ['placeholder with capitals', cat([{ ...base, host: '{Server}' }]), /host/],
    [
      'lab default under a real TLD',
      cat([base], {
        parameters: { srv: { description: 'server', lab: 'srv.example.com', source: [SEED.eset] } },
      }),
      /lab/,
    ],
    ['path without slash', cat([{ ...base, paths: ['x'] }]), /paths/],
  ];
  for (const [what, data, re] of bad) {
    t.throws(() => validate('catalog', data, what), re, what);
  }
  t.doesNotThrow(() =>
    validate('catalog', cat([{ ...base, scope: 'out-of-scope', scopeReason: 'why not' }]), 'ok'),
  );

  // loader rules, through loadScenarios on a scenario directory of our own
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-catalogs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const sub of ['catalogs', 'profiles', 'expectations']) mkdirSync(join(dir, sub));
  const load = (data: unknown) => {
    writeFileSync(join(dir, 'catalogs', 'x.yaml'), JSON.stringify(data));
    return () => loadScenarios({ dir });
  };
  t.throws(load(cat([base, { ...base, purpose: 'again' }])), /a\.proxycheck\.test:443\/tcp is listed twice/);
  t.doesNotThrow(load(cat([base, { ...base, transport: 'udp', scope: 'out-of-scope', scopeReason: 'UDP' }])));
  t.throws(load(cat([{ ...base, host: '{srv}' }])), /uses \{srv\}, not in its parameters/);
  t.doesNotThrow(load(cat([{ ...base, host: 'h{tenant}.x' }])), '{tenant} needs no declaration');
});

t.test('seed traceability', { ...requireComponent(t, 'seed documents', seedsProblem) }, async (t) => {
  t.test('every source names a seed that exists', async (t) => {
    const present = new Set(readdirSync(SEEDS_DIR));
    for (const c of catalogs) {
      for (const e of c.endpoints) {
        for (const s of e.source) t.ok(present.has(s), `${c.id} ${e.host}:${e.port}: ${s} exists`);
      }
      for (const [name, p] of Object.entries(c.parameters ?? {})) {
        for (const s of p.source) t.ok(present.has(s), `${c.id} {${name}}: ${s} exists`);
      }
    }
  });

  t.test('every http(s) URL of seeds 000, 001, 003, 004 is a row with that seed as source', async (t) => {
    const all = catalogs.flatMap((c) => c.endpoints);
    for (const file of [SEED.flexx25, SEED.flexxEn, SEED.eset, SEED.symantec]) {
      // hosts are lower-case: 000's table glues the next cell on ("...windows.netAgente443West Europe")
      const urls = [...seed(file).matchAll(/(https?):\/\/([a-z0-9.*\\-]+)(\/[^\s)|,]*)?/g)];
      t.ok(urls.length >= 5, `${file}: ${urls.length} URLs found`);
      for (const [url, scheme, rawHost = '', rawPath] of urls) {
        const host = rawHost.replace(/\\/g, '').replace(/\.$/, '').replace('***', '{tenant}');
        const port = scheme === 'http' ? 80 : 443;
        const row = all.find((e) => e.host === host && e.port === port && proto(e) === 'tcp');
        if (!t.ok(row, `${file}: ${url} -> ${host}:${port} is a row`) || !row) continue;
        t.equal(row.transport, scheme, `${host}:${port} transport ${scheme}`);
        t.ok(row.source.includes(file), `${host}:${port} cites ${file}`);
        if (rawPath && rawPath !== '/')
          t.ok(row.paths?.includes(rawPath), `${host}:${port} paths has ${rawPath}`);
      }
    }
  });

  t.test('Flexxible: region and product columns of 000 and 001', async (t) => {
    const flexx = rows('flexxible');
    const byHost = (raw: string) =>
      flexx.find((e) => e.host === raw.replace(/\\/g, '').replace('***', '{tenant}') && e.port === 443);
    // 000: "https://HOST[ (Solo Brasil)]Agente[ – Asistencia remota]443West Europe"
    const t000 = [
      ...seed(SEED.flexx25).matchAll(/^https:\/\/([a-z0-9.*-]+)[^\n]*?Agente[^\d\n]*(\d+)(.+)$/gm),
    ];
    t.equal(t000.length, 11, '000: ten required URLs and the vPro URL');
    for (const [, host = '', port, region] of t000) {
      const row = byHost(host);
      t.equal(port, '443');
      t.equal(row?.region, region?.trim(), `${host}: region ${region}`);
    }
    // 001: "https://HOST | Agent | 443 | West Europe | FXXOne, FlexxClient & FlexxDesktop |"
    const t001 = [
      ...seed(SEED.flexxEn).matchAll(/^https:\/\/(\S+) \| Agent[^|]*\| (\d+) \| ([^|]+?) \| ([^|]+?) \|$/gm),
    ];
    t.equal(t001.length, 10, '001: ten rows in the URL table');
    for (const [, host = '', port, region, products = ''] of t001) {
      const row = byHost(host);
      t.equal(port, '443');
      t.equal(row?.region, region, `${host}: region`);
      t.same([...(row?.products ?? [])].sort(), products.split(/, | & /).sort(), `${host}: products`);
    }
    for (const e of flexx)
      t.ok(e.region === 'West Europe' || e.region === 'Brazil South', `${e.host}: region`);
  });

  t.test('Flexxible: hosts the seeds exclude from SSL inspection are mustNotInspect', async (t) => {
    const text = seed(SEED.flexxEn);
    const list = text.slice(text.indexOf('Deep SSL Inspection should be disabled for the following URLs'));
    const hosts = [...list.matchAll(/^- https:\/\/(\S+)$/gm)].map((m) =>
      (m[1] ?? '').replace(/\\/g, '').replace('***', '{tenant}'),
    );
    t.equal(hosts.length, 4, '001 lists four hosts');
    for (const h of hosts) t.ok(rows('flexxible').find((e) => e.host === h)?.mustNotInspect, `${h}`);
    t.match(
      seed(SEED.flexx25),
      /excluir la URL de Flexxible para evitar una inspección profunda de SSL\/TLS/,
    );
    const vpro = rows('flexxible').filter((e) => e.host === 'iagent.flexxible.com');
    t.same(
      vpro.map((e) => e.port),
      [443, 4433],
      'vPro CIRA on 443 and the Open AMT MPS port',
    );
    for (const e of vpro) t.ok(e.mustNotInspect, `iagent:${e.port} not inspected (CIRA)`);
  });

  t.test('Kaspersky: every port seed 002 names is a row with its protocol', async (t) => {
    const text = seed(SEED.kaspersky);
    const named = [
      ...text.matchAll(/puertos?\s+(?:(\(no de SSL\))\s+|(UDP|TCP|SSL|TLS)\s+)?(\d+)(?:\s+o\s+(\d+))?/g),
    ].flatMap(([, noSsl, kind, a, b]) =>
      [a, b].filter((p) => p !== undefined).map((p) => ({ port: Number(p), kind: noSsl ? 'plain' : kind })),
    );
    // the regex must not miss a port: every 3-5 digit number of the text is one it found
    const numbers = new Set([...text.matchAll(/\b\d{3,5}\b/g)].map((m) => Number(m[0])));
    t.same(
      [...new Set(named.map((n) => n.port))].sort(),
      [...numbers].sort(),
      'every number is a named port',
    );
    t.ok(numbers.size >= 13, `${numbers.size} ports`);
    const ksc = rows('kaspersky');
    for (const { port, kind } of named) {
      const want = (e: CatalogEndpoint) =>
        e.port === port &&
        (kind === 'UDP'
          ? e.transport === 'udp'
          : kind === 'plain'
            ? e.transport === 'tcp'
            : kind === 'SSL' || kind === 'TLS'
              ? e.transport === 'tls' || e.transport === 'https'
              : e.transport !== 'udp');
      t.ok(ksc.some(want), `002: ${kind ?? ''} ${port} is a row`);
    }
  });

  t.test('ESET: every (protocol, port) of the seed 003 tables is a row', async (t) => {
    const lines = seed(SEED.eset)
      .split('\n')
      .map((l) => l.trim());
    const named: Array<{ kind: string; port: number }> = [];
    for (let i = 0; i < lines.length; i++) {
      const kind = /^(TCP|UDP|MQTT|HTTPS)$/.exec(lines[i] ?? '')?.[1];
      if (!kind || lines[i + 1] !== '|') continue;
      for (let j = i + 2; j < lines.length && lines[j] !== '|'; j++) {
        const cell = (lines[j] ?? '').replace(/\(.*\)/, '');
        t.match(cell, /^\s*\d+(\s*,\s*\d+)*\s*$/, `port cell "${lines[j]}"`);
        for (const p of cell.match(/\d+/g) ?? []) named.push({ kind, port: Number(p) });
      }
    }
    t.ok(named.length >= 35, `${named.length} (protocol, port) pairs`);
    const eset = rows('eset');
    const transports: Record<string, string[]> = {
      UDP: ['udp'],
      MQTT: ['mqtts'],
      HTTPS: ['https'],
      TCP: ['tcp', 'tls', 'http', 'https'],
    };
    for (const { kind, port } of named) {
      t.ok(
        eset.some((e) => e.port === port && transports[kind]?.includes(e.transport)),
        `003: ${kind} ${port} is a row`,
      );
    }
    const push = eset.filter((e) => e.transport === 'mqtts').map((e) => e.port);
    t.same(push.sort(), [443, 8883], 'MQTT push 8883 with the 443 failover row');
    t.match(
      eset.find((e) => e.port === 3128)?.scopeReason,
      /proxy/,
      'ESET Bridge is a proxy, not an endpoint',
    );
  });

  t.test('Symantec: never inspected; the Insight path is pinned, as the seed says', async (t) => {
    const text = seed(SEED.symantec);
    t.match(text, /omitir la inspección de SSL para estas direcciones URL/);
    t.match(text, /como Insight, no funcionan debido a certificados anclados/);
    for (const e of rows('symantec')) t.ok(e.mustNotInspect, `${e.host}:${e.port} mustNotInspect`);
    const pinned = rows('symantec')
      .filter((e) => e.pinned)
      .map((e) => e.host);
    t.ok(pinned.includes('ent-shasta-rrs.symantec.com'), 'the reputation (Insight) servers pin');
    t.ok(pinned.length < rows('symantec').length, 'pinned row by row, not wholesale');
    for (const e of rows('symantec').filter((e) => e.pinned)) t.match(e.purpose, /reputation|Insight/);
  });
});

t.test('host parameters', async (t) => {
  t.test('every row resolves to a host name; parameter defaults are under .test', async (t) => {
    const labValues = new Set<string>();
    for (const [name, p] of set.parameters) {
      if (name !== 'tenant') t.match(p.lab, /\.test$/, `{${name}} lab default ${p.lab}`);
      t.notOk(labValues.has(p.lab), `{${name}}: lab default not shared`);
      labValues.add(p.lab);
    }
    for (const c of catalogs) {
      for (const e of c.endpoints) {
        const host = resolveHost(e.host, set);
        t.match(
          host,
          /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/,
          `${e.host} -> ${host}`,
        );
      }
    }
    t.equal(set.parameters.get('tenant')?.lab, set.tenant, 'flexxible declares the default lab tenant');
    t.equal(resolveHost('{ksc-server}', set), 'ksc-server.proxycheck.test');
  });

  t.test('explicit params win over the tenant and the lab default', async (t) => {
    const s = loadScenarios({ tenant: 'acme7', params: { 'ksc-server': 'ksc.corp.example' } });
    t.equal(resolveHost('{ksc-server}', s), 'ksc.corp.example');
    t.equal(
      resolveHost('flxsbname{tenant}.servicebus.windows.net', s),
      'flxsbnameacme7.servicebus.windows.net',
    );
    t.equal(resolveHost('{eset-push}', s), 'eset-push.proxycheck.test', 'others keep their lab default');
    t.equal(
      resolveHost('x{tenant}', { ...s, params: { tenant: 'zz9' } }),
      'xzz9',
      'params.tenant beats --tenant',
    );
    t.equal(resolveHost('flxiothub{tenant}.azure-devices.net', 'old1'), 'flxiothubold1.azure-devices.net');
  });

  t.test('an unknown placeholder is a UsageError naming it', async (t) => {
    t.throws(() => resolveHost('{no-such-server}:443', set), UsageError);
    t.throws(() => resolveHost('{no-such-server}', set), /unknown parameter \{no-such-server\}/);
    t.throws(() => resolveHost('{ksc-server}', 'tenant-only'), /unknown parameter \{ksc-server\}/);
    t.throws(
      () => loadScenarios({ params: { 'ksc-sever': 'x.example' } }),
      /unknown host parameter "ksc-sever"/,
    );
    t.throws(() => loadScenarios({ params: { 'ksc-server': 'bad host' } }), UsageError);
  });

  t.test('missingParams: what live mode would have to skip', async (t) => {
    t.same(placeholders('{a}.{b-c}.{a}'), ['a', 'b-c']);
    t.same(missingParams('{ksc-server}', {}), ['ksc-server']);
    t.same(missingParams('{ksc-server}', { 'ksc-server': 'ksc.corp.example' }), []);
    t.same(missingParams('flxsbname{tenant}.servicebus.windows.net', {}), ['tenant']);
    t.same(missingParams('api.ipify.org', {}), []);
    const needing = catalogs.flatMap((c) => c.endpoints).filter((e) => missingParams(e.host, {}).length > 0);
    t.ok(needing.length > 0 && needing.every((e) => e.host.includes('{')), 'rows with placeholders only');
  });
});

t.test(
  'the seed copy in scenarios/seeds is identical to the project seeds (when they are here)',
  async (t) => {
    if (!existsSync(SHARED_SEEDS)) {
      t.pass(`no ${SHARED_SEEDS} on this machine; the copy in scenarios/seeds is the reference`);
      return;
    }
    for (const f of readdirSync(SHARED_SEEDS)) {
      t.equal(readFileSync(join(SEEDS_DIR, f), 'utf8'), readFileSync(join(SHARED_SEEDS, f), 'utf8'), f);
    }
  },
);
