/**
 * squid in a container: testcontainers 11 GenericContainer on the host network, the instance's
 * etc directory (squid.conf, hosts, htpasswd, PEMs) bind-mounted read-only, and a wait strategy on
 * squid's readiness log line with a named timeout. `squid -N -d1` writes its level-1 cache.log
 * lines to stderr, i.e. to the container logs, which are kept and attached to setup_fail evidence.
 *
 * Every container carries the labels `proxycheck=1`, `proxycheck.run=<run dir>`,
 * `proxycheck.proxy=<id>`, `proxycheck.pid=<our pid>` and `proxycheck.instance=<uuid>`: the stop
 * registered with onCleanup() before the container exists removes it by that label even if a
 * signal arrives while it is still starting; `proxycheck clean` removes anything labelled
 * `proxycheck=1`. The certificate db is the image's /var/spool/squid/ssl_db, fresh in every
 * container.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { StartedTestContainer } from 'testcontainers';
import { errorMessage, SetupError } from '../../errors.ts';
import { onCleanup, refuseIfStopping } from '../../lifecycle.ts';
import { SQUID_READY, SQUID_VERSION_LINE } from './config.ts';
import { OUR_LABEL } from './image.ts';
import { ensureSquidImage, testcontainers } from './runtime.ts';
import type { SquidLaunch, SquidRunning } from './squid.ts';

const ETC_IN_CONTAINER = '/etc/squid/proxycheck';
const STOP_TIMEOUT_MS = 5_000;
const KEEP_LINES = 200;

/** Removes every container whose labels match (all of) `labels`; returns how many. */
export async function removeContainersLabelled(labels: Record<string, string>): Promise<number> {
  const { getContainerRuntimeClient } = await testcontainers();
  const client = await getContainerRuntimeClient();
  const docker = client.container.dockerode;
  const found = await docker.listContainers({
    all: true,
    filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) },
  });
  await Promise.all(
    found.map(async (c) => {
      const container = docker.getContainer(c.Id);
      if (c.State === 'running') await container.stop({ t: 5 }).catch(() => {});
      await container.remove({ force: true }).catch(() => {});
    }),
  );
  return found.length;
}

export async function startSquidContainer(l: SquidLaunch): Promise<SquidRunning> {
  const what = `${l.id} (container)`;
  const image = await ensureSquidImage();
  const { GenericContainer, Wait } = await testcontainers();
  const instance = randomUUID();
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
  const logs: string[] = [];
  const container = new GenericContainer(image)
    .withNetworkMode('host')
    .withCommand(['squid', '-N', '-d1', '-f', `${ETC_IN_CONTAINER}/squid.conf`])
    .withBindMounts([{ source: l.etcDir, target: ETC_IN_CONTAINER, mode: 'ro' }])
    .withLabels({
      [OUR_LABEL]: '1',
      [`${OUR_LABEL}.run`]: l.runId,
      [`${OUR_LABEL}.proxy`]: l.id,
      [`${OUR_LABEL}.pid`]: String(process.pid),
      [`${OUR_LABEL}.instance`]: instance,
    })
    .withWaitStrategy(Wait.forLogMessage(SQUID_READY))
    .withStartupTimeout(l.readyTimeoutMs)
    .withLogConsumer((stream: Readable) => {
      stream.on('data', (line: Buffer | string) => {
        logs.push(...String(line).split('\n').filter(Boolean));
        if (logs.length > KEEP_LINES) logs.splice(0, logs.length - KEEP_LINES);
      });
      stream.on('error', () => {});
    });

  let started: StartedTestContainer | undefined;
  let starting: Promise<StartedTestContainer> | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // a signal during start: let start() settle (squid is up in well under a second), then stop
      if (!started && starting) await starting.catch(() => undefined);
      if (started) {
        await started.stop({ timeout: STOP_TIMEOUT_MS, remove: true }).catch(() => {});
      }
      // whatever start() left behind (a failed start, an interrupted one)
      await removeContainersLabelled({ [`${OUR_LABEL}.instance`]: instance }).catch(() => 0);
      unregister();
    })();
    return stopping;
  };
  refuseIfStopping(what); // no await from here to container.start(): its stop is registered first
  const unregister = onCleanup(`squid ${l.id} (container ${instance})`, stop);

  try {
    starting = container.start();
    started = await starting;
  } catch (err) {
    await stop();
    const problem =
      logs.find((x) => /FATAL|Bungled|unrecognized/.test(x))?.replace(/^.*?\|\s*/, '') ?? errorMessage(err);
    throw new SetupError(
      `${what} did not become ready (deadline ${l.readyTimeoutMs} ms for "Accepting ... HTTP Socket connections"): ${problem}`,
      { image, containerLogs: logs.join('\n'), config, error: errorMessage(err) },
      { cause: err },
    );
  }
  const version = logs.map((x) => SQUID_VERSION_LINE.exec(x)?.[1]).find(Boolean);
  return { runtime: 'container', version: `squid ${version ?? 'unknown'}`, stop };
}
