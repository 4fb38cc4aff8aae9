/**
 * Where a proxy runs, and the testcontainers set-up every containerised proxy shares.
 *
 * testcontainers needs two settings on machines like CI's (dockerd started with
 * `--bridge=none`, no registry): `TESTCONTAINERS_RYUK_DISABLED=true` (Ryuk, the reaper, is an image
 * that would have to be pulled; we stop and label our containers ourselves) and
 * `TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1` (our containers use the host network). We set these as
 * defaults only when they are unset; set them yourself to override.
 */
import { errorMessage, SetupError, withDeadline } from '../../errors.ts';

/** Where a proxy runs: in a container, as a plain process, or whichever this machine can do. */
export type Runtime = 'auto' | 'container' | 'process';
export type ConcreteRuntime = 'process' | 'container';

const ENGINE_DEADLINE_MS = 10_000;

type Testcontainers = typeof import('testcontainers');
let tc: Promise<Testcontainers> | undefined;

/** Loads testcontainers (lazily: in-process and process runs never pay for it) with our defaults. */
export function testcontainers(): Promise<Testcontainers> {
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
  process.env.TESTCONTAINERS_HOST_OVERRIDE ??= '127.0.0.1';
  tc ??= import('testcontainers');
  return tc;
}

/** Resolves with undefined when a container engine answers, else with why not (one line). */
export async function engineProblem(): Promise<string | undefined> {
  try {
    const { getContainerRuntimeClient } = await testcontainers();
    await withDeadline('container engine check', ENGINE_DEADLINE_MS, () => getContainerRuntimeClient());
    return undefined;
  } catch (err) {
    return `no container engine answers (${errorMessage(err)})`;
  }
}

/** What `auto` needs to know about one product (e.g. squid) to choose its runtime. */
export interface RuntimeChoice {
  /** The product's name in messages, e.g. `squid`. */
  product: string;
  /** The image tag the container runtime would use. */
  imageTag(): string;
  /** Resolves once the image exists (building it if need be). */
  ensureImage(): Promise<unknown>;
  /** The installed binary, or undefined when the process runtime is impossible. */
  binary(): string | undefined;
  /** Why the binary is missing, e.g. `squid is not installed (no /usr/sbin/squid; ...)`. */
  notInstalled: string;
}

const decided = new Map<string, Promise<ConcreteRuntime>>();

/**
 * `container` and `process` are taken as asked (problems surface when the proxy starts). `auto`:
 * container if an engine answers and the image exists or can be built, else process if the
 * product is installed, else a one-line SetupError naming what is missing. Decided once per
 * process and product.
 */
export function resolveRuntime(runtime: Runtime, choice: RuntimeChoice): Promise<ConcreteRuntime> {
  if (runtime !== 'auto') return Promise.resolve(runtime);
  let d = decided.get(choice.product);
  if (!d) {
    d = (async (): Promise<ConcreteRuntime> => {
      const problems: string[] = [];
      const engine = await engineProblem();
      if (!engine) {
        try {
          await choice.ensureImage();
          return 'container';
        } catch (err) {
          problems.push(
            `${choice.product} image ${choice.imageTag()} missing and cannot be built (${errorMessage(err)})`,
          );
        }
      } else {
        problems.push(engine);
      }
      if (choice.binary()) return 'process';
      problems.push(choice.notInstalled);
      throw new SetupError(`no way to run ${choice.product}: ${problems.join('; ')}`);
    })();
    decided.set(choice.product, d);
  }
  return d;
}
