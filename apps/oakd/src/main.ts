/**
 * oakd: the one-command 1-DOC (`make up`, `oak up`). Prints where the API is and how to log in.
 */
import { parseConfig, usage, UsageError } from './config.ts';
import { startOakd } from './oakd.ts';

async function main(): Promise<number> {
  let cfg;
  try {
    cfg = parseConfig(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`oakd: ${err.message}\n\n${usage()}`);
      return 2;
    }
    throw err;
  }
  if (cfg === 'help') {
    process.stdout.write(usage());
    return 0;
  }
  const oakd = await startOakd(cfg);
  const api = oakd.root.url.replace('127.0.0.1', cfg.host === '0.0.0.0' ? 'localhost' : cfg.host);
  const lines = [
    '',
    'oak 1-DOC is running: root + cluster + worker in one process.',
    `  dashboard:  ${api}/`,
    `  API:        ${api}/api   (OpenAPI: ${api}/api/docs)`,
    `  health:     ${api}/healthz   metrics: ${api}/metrics`,
    `  cluster:    ${cfg.clusterName}, workers register at ${oakd.cluster.registrationUrl}, MQTT ${oakd.cluster.mqttUrl}`,
    `  worker:     ${oakd.worker ? `${oakd.worker.id} (${oakd.worker.virtualizations.join(', ')})` : 'none in this process'}`,
    `  data:       ${cfg.dataDir}`,
    '',
    ...addWorker(oakd.publicAddress, oakd.cluster.port, oakd.cluster.mqttUrl, oakd.tokens.worker, oakd.netmanager !== null),
    `  add a cluster:  OAK_JOIN_TOKEN=${oakd.tokens.spareCluster} SYSTEM_MANAGER_URL=<this device>:${oakd.link.port} CLUSTER_NAME=<name> oak-cluster`,
    `                  (the tokens are kept in ${cfg.dataDir}/join-tokens.json; more with 'oak token create', revoke with 'oak token revoke <id>')`,
    '',
    `  log in:     oak login --root ${api} -u Admin   (password: ${oakd.root.bootstrap.generatedPassword ?? (cfg.adminPassword ? 'the one in OAK_ADMIN_PASSWORD' : 'the one printed at the first start')})`,
    `  or:         curl -s -X POST ${api}/api/auth/login -H 'content-type: application/json' -d '{"username":"Admin","password":"..."}'`,
    '',
    'Stop with Ctrl-C; instances keep running and are re-adopted at the next start.',
    '',
  ];
  process.stdout.write(lines.join('\n'));
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      const force = setTimeout(() => process.exit(1), 10_000);
      force.unref();
      void oakd.close().then(resolve, resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  return 0;
}

/**
 * The add-a-worker steps: the NodeEngine line (its shape is parsed by scripts: keep it), and the
 * worker's NetManager before it (overlay). `<this device>` is the address workers reach; oakd's
 * own tunnel endpoint (NodePublicAddress) is named so that the user can check it is that one.
 */
function addWorker(address: string, clusterPort: number, mqttUrl: string, token: string, overlay: boolean): string[] {
  const mqttPort = /:(\d+)\/?$/.exec(mqttUrl)?.[1] ?? '10003';
  return [
    `  add a worker:   NodeEngine -a <this device> -p ${clusterPort} -t ${token} -n 6000`,
    '                  first, on the worker (root), its NetManager for the overlay: NetManager -p 6000, with /etc/netmanager/netcfg.json',
    `                  {"NodePublicAddress": "<the worker's address>", "NodePublicPort": 50103, "ClusterUrl": "<this device>", "ClusterMqttPort": ${mqttPort}}`,
    `                  (<this device>: ${address}${overlay ? ', this device\'s tunnel endpoint (--public-address)' : ''}; without the overlay leave out the NetManager and -n)`,
  ];
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`oakd: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
