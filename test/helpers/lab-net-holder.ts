/**
 * Child process for test/lab-net.test.ts: takes COUNT lab nets (default range, or FIRST–LAST),
 * prints them as one JSON line, and holds them until it is killed or its stdin closes.
 */
import { reserveLabNet } from './lab-net.ts';

const [count = '1', first, last] = process.argv.slice(2);
const range = first && last ? { first: Number(first), last: Number(last) } : {};
const nets: number[] = [];
for (let i = 0; i < Number(count); i++) nets.push((await reserveLabNet(range)).net);
process.stdout.write(`${JSON.stringify(nets)}\n`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
