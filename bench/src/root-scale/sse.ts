/**
 * The SSE clients of the `root-scale` benchmark, in a process of their own: N streams of GET
 * /api/events?types=instance (spread over several users: the root allows 16 streams per user),
 * each counting its instance events and stamping, with process.hrtime (CLOCK_MONOTONIC, the
 * clock the simulated clusters stamp their RUNNING reports with), the first RUNNING event of each
 * instance it gets.
 *
 * stdin lines: `open <json {base, tokens, n}>` -> `opened <n>` once every stream is connected;
 * `dump <file>` -> writes [{events, running: {"<job>#<n>": ns}}] per stream, resets them, answers
 * `dumped`; `stat` -> `stat <fewest RUNNING instances a stream got> <fewest events> <most events>`;
 * `close` -> `closed`; `quit`.
 */
import { writeFileSync } from 'node:fs';
import { Agent, request, type ClientRequest } from 'node:http';
import { createInterface } from 'node:readline';

interface Stream {
  req: ClientRequest;
  events: number;
  running: Record<string, number>;
}

const agent = new Agent({ keepAlive: false, maxSockets: 1000 });
let streams: Stream[] = [];

function open(base: string, token: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const s: Stream = { req: undefined as unknown as ClientRequest, events: 0, running: {} };
    s.req = request(new URL('/api/events?types=instance', base), { agent, headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`GET /api/events -> ${res.statusCode}`));
        res.resume();
        return;
      }
      res.setEncoding('utf8');
      let buf = '';
      let connected = false;
      res.on('data', (chunk: string) => {
        const at = Number(process.hrtime.bigint());
        buf += chunk;
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          if (!connected && block.includes(': connected')) {
            connected = true;
            resolve(s);
          }
          if (!block.startsWith('event: instance')) continue;
          s.events++;
          if (!block.includes('"RUNNING"')) continue;
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
          const e = JSON.parse(data) as { job_name: string; instance: { instance_number: number; status: string } };
          if (e.instance.status !== 'RUNNING') continue;
          const key = `${e.job_name}#${e.instance.instance_number}`;
          if (s.running[key] === undefined) s.running[key] = at;
        }
      });
      res.on('error', () => undefined);
    });
    s.req.on('error', reject);
    s.req.end();
  });
}

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = line.trim();
  if (cmd === 'quit') break;
  if (cmd.startsWith('open ')) {
    const o = JSON.parse(cmd.slice(5)) as { base: string; tokens: string[]; n: number };
    const more = await Promise.all(Array.from({ length: o.n }, (_, i) => open(o.base, o.tokens[i % o.tokens.length] as string)));
    streams.push(...more);
    process.stdout.write(`opened ${streams.length}\n`);
  } else if (cmd.startsWith('dump ')) {
    writeFileSync(cmd.slice(5), JSON.stringify(streams.map((s) => ({ events: s.events, running: s.running }))));
    for (const s of streams) {
      s.events = 0;
      s.running = {};
    }
    process.stdout.write('dumped\n');
  } else if (cmd === 'stat') {
    const running = streams.map((s) => Object.keys(s.running).length);
    const events = streams.map((s) => s.events);
    process.stdout.write(`stat ${Math.min(...running)} ${Math.min(...events)} ${Math.max(...events)}\n`);
  } else if (cmd === 'close') {
    for (const s of streams) s.req.destroy();
    streams = [];
    process.stdout.write('closed\n');
  }
}
for (const s of streams) s.req.destroy();
process.exit(0);
