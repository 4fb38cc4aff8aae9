/**
 * The bench's proxy, in a process of its own (so no client or origin shares its file descriptors or
 * its event loop): proxy-chain's plain forward proxy, as chain-plain runs it, with lab names
 * resolved to lab addresses. Prints `{"port":N}` once listening; stops when stdin closes.
 */
import { Server } from 'proxy-chain';
import { labAddress } from '../../harness/lab/addresses.ts';

const net = Number(process.argv[2]);

/** dns.lookup's shape: every name is a lab name here. */
function lookup(host: string, options: unknown, cb: (...a: unknown[]) => void): void {
  const address = labAddress(host, net);
  const all = typeof options === 'object' && options !== null && (options as { all?: boolean }).all;
  process.nextTick(() => (all ? cb(null, [{ address, family: 4 }]) : cb(null, address, 4)));
}
const server = new Server({
  host: '127.0.0.1',
  port: 0,
  verbose: false,
  prepareRequestFunction: () => ({ dnsLookup: lookup as never }),
});
await server.listen();
process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);
process.stdin.resume();
process.stdin.on('end', () => void server.close(true).then(() => process.exit(0)));
