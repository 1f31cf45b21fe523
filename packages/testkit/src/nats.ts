/**
 * A private NATS server (Debian's nats-server) with MQTT and JetStream on free ports, its own
 * config, pid file, users file and store dir in a temp dir: never the machine's NATS on 4222.
 * The users file starts with the admin user only; a cluster started with `natsAuth` of this
 * instance rewrites it (packages/bus/src/nats.ts).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { canConnectTcp } from './net-util.ts';
import { freePort, shortId, spawnDaemon, stopProcess, tmpDir, waitFor } from './util.ts';

export interface StartNatsOptions {
  /** the cluster's own user (full access), default oak-admin / a random password */
  adminUser?: string;
  adminPassword?: string;
  /** listen address (default 127.0.0.1; inside `netns`, e.g. 0.0.0.0) */
  host?: string;
  /** run inside this network namespace (`ip netns` name) */
  netns?: string;
  /** the address tests dial (default `host`, or 127.0.0.1 for 0.0.0.0) */
  dialHost?: string;
  timeoutMs?: number;
}

export interface NatsInstance {
  /** `mqtt://<dialHost>:<mqttPort>` */
  url: string;
  /** `mqtt://<admin>:<password>@<dialHost>:<mqttPort>` */
  adminUrl: string;
  adminUser: string;
  adminPassword: string;
  mqttPort: number;
  /** `http://<dialHost>:<monitorPort>` */
  monitorUrl: string;
  dir: string;
  configFile: string;
  usersFile: string;
  pidFile: string;
  /** lines the server printed */
  output(): string;
  /** SIGKILL (its store dir stays) */
  kill9(): Promise<void>;
  /** starts it again on the same ports and store */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startNats(opts: StartNatsOptions = {}): Promise<NatsInstance> {
  const dir = await tmpDir('oak-nats');
  const host = opts.host ?? '127.0.0.1';
  const dialHost = opts.dialHost ?? (host === '0.0.0.0' ? '127.0.0.1' : host);
  const adminUser = opts.adminUser ?? 'oak-admin';
  const adminPassword = opts.adminPassword ?? `nats-${shortId(8)}`;
  const configFile = join(dir.path, 'nats.conf');
  const usersFile = join(dir.path, 'oak-users.conf');
  const pidFile = join(dir.path, 'nats.pid');
  await writeFile(usersFile, `users = [\n  ${JSON.stringify({ user: adminUser, password: adminPassword, permissions: { publish: '>', subscribe: '>' } })}\n]\n`, { mode: 0o600 });
  const [port, mqttPort, monitorPort] = [await freePort(), await freePort(), await freePort()];
  await writeFile(configFile, [
    `server_name: oak-test-${shortId(3)}`,
    `listen: ${host}:${port}`,
    `http: ${host}:${monitorPort}`,
    `pid_file: "${pidFile}"`,
    `jetstream { store_dir: "${join(dir.path, 'js')}", max_memory_store: 64MB, max_file_store: 256MB }`,
    'authorization {',
    '  include "oak-users.conf" # relative to this file (NATS reads include paths so, even absolute ones)',
    '}',
    `mqtt { listen: ${host}:${mqttPort} }`,
    '',
  ].join('\n'));
  let child: ChildProcess | undefined;
  let output = (): string => '';
  const start = async (): Promise<void> => {
    const cmd = opts.netns !== undefined ? ['nsenter', [`--net=/run/netns/${opts.netns}`, '--', 'nats-server', '-c', configFile]] as const : ['nats-server', ['-c', configFile]] as const;
    const d = spawnDaemon(cmd[0], [...cmd[1]]);
    child = d.child;
    output = d.output;
    const c = d.child;
    await waitFor(async () => {
      if (c.exitCode !== null) throw new Error(`nats-server exited: ${d.output().slice(-1500)}`);
      return /Server is ready/.test(d.output()) && (opts.netns !== undefined || (await canConnectTcp(dialHost, mqttPort)));
    }, { timeoutMs: opts.timeoutMs ?? 15_000, intervalMs: 25, message: `nats-server on ${dialHost}:${mqttPort}` });
  };
  try {
    await start();
  } catch (err) {
    if (child) await stopProcess(child, 2000);
    await dir.remove();
    throw err;
  }
  const kill9 = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGKILL');
    await exited;
  };
  let stopped = false;
  return {
    url: `mqtt://${dialHost}:${mqttPort}`,
    adminUrl: `mqtt://${encodeURIComponent(adminUser)}:${encodeURIComponent(adminPassword)}@${dialHost}:${mqttPort}`,
    adminUser,
    adminPassword,
    mqttPort,
    monitorUrl: `http://${dialHost}:${monitorPort}`,
    dir: dir.path,
    configFile,
    usersFile,
    pidFile,
    output: () => output(),
    kill9,
    restart: async () => {
      await kill9();
      await start();
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      if (child) await stopProcess(child, 3000);
      await dir.remove();
    },
  };
}
