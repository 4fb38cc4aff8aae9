/**
 * squid in a container (the container handling is the toolkit's: ../toolkit/container.ts): the
 * squid image, the instance's etc directory (squid.conf, hosts, htpasswd, PEMs) bind-mounted
 * read-only, and readiness on squid's "Accepting ... HTTP Socket connections" line. `squid -N -d1`
 * writes its level-1 cache.log lines to stderr, i.e. to the container logs, which are kept and
 * attached to setup_fail evidence. The certificate db is the image's /var/spool/squid/ssl_db,
 * fresh in every container.
 */
import { startContainer } from '../toolkit/container.ts';
import { SQUID_READY, SQUID_VERSION_LINE } from './config.ts';
import { ensureSquidImage } from './runtime.ts';
import type { SquidLaunch, SquidRunning } from './squid.ts';

const ETC_IN_CONTAINER = '/etc/squid/proxycheck';

export async function startSquidContainer(l: SquidLaunch): Promise<SquidRunning> {
  const image = await ensureSquidImage();
  const config = l.writeConfig(
    {
      pidFile: '/run/squid.pid',
      cacheLog: '/var/log/squid/cache.log',
      accessLog: 'stdio:/var/log/squid/access.log',
      coredumpDir: '/var/spool/squid',
      helperDir: '/usr/lib/squid',
      sslDb: '/var/spool/squid/ssl_db',
    },
    ETC_IN_CONTAINER,
  );
  const running = await startContainer({
    what: `${l.id} (container)`,
    image,
    command: ['squid', '-N', '-d1', '-f', `${ETC_IN_CONTAINER}/squid.conf`],
    bindMounts: [{ source: l.etcDir, target: ETC_IN_CONTAINER, mode: 'ro' }],
    proxyId: l.id,
    runId: l.runId,
    cleanupName: (instance) => `squid ${l.id} (container ${instance})`,
    ready: SQUID_READY,
    readyName: '"Accepting ... HTTP Socket connections"',
    deadlineMs: l.readyTimeoutMs,
    problem: (logs) => logs.find((x) => /FATAL|Bungled|unrecognized/.test(x))?.replace(/^.*?\|\s*/, ''),
    evidence: { config },
  });
  // the log stream may lag the readiness wait by a moment: give it up to 2 s to bring the version line
  const find = () => running.logs.map((x) => SQUID_VERSION_LINE.exec(x)?.[1]).find(Boolean);
  let version = find();
  for (const until = performance.now() + 2_000; !version && performance.now() < until; version = find())
    await new Promise((r) => setTimeout(r, 50));
  return { runtime: 'container', version: `squid ${version ?? 'unknown'}`, stop: running.stop };
}
