/**
 * `--shard i/n`: splits the matrix across CI jobs. The unit of work is one (proxy, profile) pair.
 *
 * The pairs are sorted by proxy id, then profile id (code-unit order, so every job computes the same
 * list whatever order `--proxies` was typed in), and cut into n contiguous, balanced chunks: shard i
 * (1-based) gets items [floor((i-1)·N/n), floor(i·N/n)). Why chunks of a proxy-major list:
 * - balanced: shard sizes differ by at most one pair (a hash can leave a shard empty and another
 *   doubled on a matrix of 8 proxies);
 * - few proxy starts: a proxy's pairs are adjacent, so each proxy starts in one shard, or in two
 *   where a chunk boundary falls inside it — never in every shard, as round-robin would;
 * - stable: with P proxies the chunk boundaries fall at proxy position i·P/n whatever the number
 *   of profiles, so adding a profile moves no proxy to another shard (only a proxy sitting on a
 *   boundary may have its pairs split differently between the two shards next to it).
 * Every job must be given the same `--proxies` and `--profiles`: the union of shards 1..n is then
 * the unsharded run and the shards are disjoint.
 */
import { UsageError } from '../errors.ts';

export interface Shard {
  /** 1-based. */
  index: number;
  count: number;
}

export interface WorkItem {
  proxy: string;
  profile: string;
}

const MAX_SHARDS = 1000;

export function parseShard(value: string): Shard {
  const m = /^(\d{1,4})\/(\d{1,4})$/.exec(value.trim());
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || count < 1 || count > MAX_SHARDS || index < 1 || index > count) {
    throw new UsageError(
      `--shard must be i/n with 1 <= i <= n <= ${MAX_SHARDS} (e.g. 2/4 for the second of four jobs), not "${value}"`,
    );
  }
  return { index, count };
}

export function formatShard(s: Shard): string {
  return `${s.index}/${s.count}`;
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function itemKey(proxy: string, profile: string): string {
  return `${proxy}/${profile}`;
}

/** Every (proxy, profile) pair of the selection, sorted proxy-major, without duplicates. */
export function workItems(proxies: string[], profiles: string[]): WorkItem[] {
  const ps = [...new Set(proxies)].sort(byCodeUnits);
  const fs = [...new Set(profiles)].sort(byCodeUnits);
  return ps.flatMap((proxy) => fs.map((profile) => ({ proxy, profile })));
}

/** The work items of one shard (all of them without a shard). */
export function shardItems(items: WorkItem[], shard?: Shard): WorkItem[] {
  if (!shard) return items;
  const n = items.length;
  const from = Math.floor(((shard.index - 1) * n) / shard.count);
  const to = Math.floor((shard.index * n) / shard.count);
  return items.slice(from, to);
}

/** A predicate for the runner: does (proxy, profile) belong to this shard? */
export function shardFilter(
  proxies: string[],
  profiles: string[],
  shard?: Shard,
): (proxy: string, profile: string) => boolean {
  if (!shard) return () => true;
  const mine = new Set(
    shardItems(workItems(proxies, profiles), shard).map((w) => itemKey(w.proxy, w.profile)),
  );
  return (proxy, profile) => mine.has(itemKey(proxy, profile));
}

export interface Selection {
  proxies: string[];
  /** The profile ids selected (after expanding "all"). */
  profiles: string[];
  /** The selection was `--profiles all`: a profile that no longer exists is part of it too. */
  allProfiles: boolean;
  shard?: Shard;
}

/**
 * Which result ids (`<proxy>/<profile>/…`) this run is responsible for: those of its own work items.
 * A baseline row of a selected proxy whose profile no longer exists (under `--profiles all`) has no
 * work item in any shard; shard 1 (or the unsharded run) takes it, so that exactly one job reports
 * it missing.
 */
export function selectionScope(sel: Selection): (id: string) => boolean {
  const proxies = new Set(sel.proxies);
  const profiles = new Set(sel.profiles);
  const mine = new Set(
    shardItems(workItems(sel.proxies, sel.profiles), sel.shard).map((w) => itemKey(w.proxy, w.profile)),
  );
  return (id) => {
    const [proxy, profile] = id.split('/');
    if (proxy === undefined || profile === undefined || !proxies.has(proxy)) return false;
    if (mine.has(itemKey(proxy, profile))) return true;
    if (profiles.has(profile)) return false; // another shard's
    return sel.allProfiles && (!sel.shard || sel.shard.index === 1);
  };
}

export function describeSelection(sel: Selection): string {
  const parts = [
    `proxies ${[...new Set(sel.proxies)].join(',')}`,
    `profiles ${sel.allProfiles ? 'all' : [...new Set(sel.profiles)].join(',')}`,
  ];
  if (sel.shard) parts.push(`shard ${formatShard(sel.shard)}`);
  return parts.join('; ');
}
