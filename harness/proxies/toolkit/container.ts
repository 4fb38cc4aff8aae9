/**
 * A proxy in a container: testcontainers 11 GenericContainer on the host network, a wait strategy
 * on the product's readiness log line with a named timeout, and the container logs kept and
 * attached to setup_fail evidence.
 *
 * Every container carries the labels `proxycheck=1`, `proxycheck.run=<run dir>`,
 * `proxycheck.proxy=<id>`, `proxycheck.pid=<our pid>`, `proxycheck.pidstart=<our start time>`,
 * `proxycheck.host=<our hostname>` and `proxycheck.instance=<uuid>`: the stop registered with
 * onCleanup() before the container exists removes it by that label even if a signal arrives while
 * it is still starting.
 *
 * A run killed by SIGKILL stops nothing (and Ryuk, testcontainers' reaper, may be disabled), so
 * the first container a process starts is preceded by a sweep: containers whose owner (pid and
 * start time, as for run directories: harness/lab/rundir.ts) is gone are removed. Only containers
 * labelled with this host's name are judged; another host's (a shared engine) are left alone.
 * `proxycheck clean` runs the same sweep; `proxycheck clean --all` removes anything labelled
 * `proxycheck=1`.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Readable } from 'node:stream';
import type { StartedTestContainer } from 'testcontainers';
import { errorMessage, SetupError } from '../../errors.ts';
import { ownerAlive, selfOwner } from '../../lab/rundir.ts';
import { onCleanup, refuseIfStopping } from '../../lifecycle.ts';
import { testcontainers } from './runtime.ts';

/** Label on everything we create, so `proxycheck clean` can find leftovers. */
export const OUR_LABEL = 'proxycheck';

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

/** The containers of dead owners on this host (see the top), removed; returns their ids. */
export async function sweepDeadContainers(): Promise<string[]> {
  const { getContainerRuntimeClient } = await testcontainers();
  const client = await getContainerRuntimeClient();
  const docker = client.container.dockerode;
  const found = await docker.listContainers({
    all: true,
    filters: { label: [`${OUR_LABEL}=1`, `${OUR_LABEL}.host=${hostname()}`] },
  });
  const dead = found.filter((c) => {
    const pid = Number(c.Labels[`${OUR_LABEL}.pid`]);
    if (!Number.isInteger(pid) || pid < 1) return false;
    return !ownerAlive({ pid, start: c.Labels[`${OUR_LABEL}.pidstart`] ?? '0' });
  });
  await Promise.all(
    dead.map((c) =>
      docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => {}),
    ),
  );
  return dead.map((c) => c.Id);
}

let swept: Promise<unknown> | undefined;

export interface ContainerSpec {
  /** Names the container in messages, e.g. `squid-default (container)`. */
  what: string;
  image: string;
  command: string[];
  bindMounts?: { source: string; target: string; mode: 'ro' | 'rw' }[];
  /** The proxy id and the run directory's name, for the labels. */
  proxyId: string;
  runId: string;
  /** The name of its cleanup (shown when a signal stops the run), given the instance uuid. */
  cleanupName(instance: string): string;
  /** The log line that says it is ready, and how it is named in the error (`"Accepting ..."`). */
  ready: RegExp;
  readyName: string;
  deadlineMs: number;
  /** Why it failed, from its log lines (e.g. the first FATAL line); the start error otherwise. */
  problem?(logs: string[]): string | undefined;
  /** Added to the setup_fail evidence (e.g. the generated config). */
  evidence?: Record<string, unknown>;
}

export interface RunningContainer {
  /** Its last 200 log lines so far. */
  logs: string[];
  /** Stops and removes it (and anything left with its instance label); idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts the container and waits for its readiness line. On failure it is removed and a
 * SetupError says `<what> did not become ready (deadline N ms for <readyName>): <problem>`, with
 * the image, the container logs, `evidence` and testcontainers' error as evidence.
 */
export async function startContainer(spec: ContainerSpec): Promise<RunningContainer> {
  const { what, image } = spec;
  const { GenericContainer, Wait } = await testcontainers();
  // dead runs' containers, once per process (they hold ports and memory; nothing else removes them)
  swept ??= sweepDeadContainers().catch(() => []);
  await swept;
  const instance = randomUUID();
  const logs: string[] = [];
  const container = new GenericContainer(image)
    .withNetworkMode('host')
    .withCommand(spec.command)
    .withBindMounts(spec.bindMounts ?? [])
    .withLabels({
      [OUR_LABEL]: '1',
      [`${OUR_LABEL}.run`]: spec.runId,
      [`${OUR_LABEL}.proxy`]: spec.proxyId,
      [`${OUR_LABEL}.pid`]: String(process.pid),
      [`${OUR_LABEL}.pidstart`]: selfOwner().start,
      [`${OUR_LABEL}.host`]: hostname(),
      [`${OUR_LABEL}.instance`]: instance,
    })
    .withWaitStrategy(Wait.forLogMessage(spec.ready))
    .withStartupTimeout(spec.deadlineMs)
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
      // a signal during start: let start() settle (a proxy is up in well under a second), then stop
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
  const unregister = onCleanup(spec.cleanupName(instance), stop);

  try {
    starting = container.start();
    started = await starting;
  } catch (err) {
    await stop();
    const problem = spec.problem?.(logs) ?? errorMessage(err);
    throw new SetupError(
      `${what} did not become ready (deadline ${spec.deadlineMs} ms for ${spec.readyName}): ${problem}`,
      { image, containerLogs: logs.join('\n'), ...spec.evidence, error: errorMessage(err) },
      { cause: err },
    );
  }
  return { logs, stop };
}
