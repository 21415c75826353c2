#!/usr/bin/env node
// irqtrace-operator: `run` the roles (controller, ingest, status) the config
// names; `crd` and `rbac` print the objects the Helm chart installs, from the
// same sources the operator is built from.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import * as k8s from '@kubernetes/client-node';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { irqTraceCrdYaml } from './api/crd.js';
import { OperatorConfigError, parseOperatorConfig } from './config.js';
import { rbacObjects } from './deploy/rbac.js';
import { runOperator } from './run.js';

const program = new Command('irqtrace-operator').description('the irqtrace operator: IrqTrace controller, ingest (agents -> NATS JetStream) and status aggregator');

program
  .command('run')
  .description('run the roles of the config (default: all three, leader-elected where needed)')
  .option('--config <file>', 'operator config (YAML); absent: defaults')
  .option('--kubeconfig <file>', 'kubeconfig (default: in-cluster, else $KUBECONFIG or ~/.kube/config)')
  .action(async (o: { config?: string; kubeconfig?: string }) => {
    const log = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { component: 'irqtrace-operator' } });
    let config;
    try {
      config = parseOperatorConfig(o.config ? readFileSync(o.config, 'utf8') : '');
    } catch (err) {
      process.stderr.write(`irqtrace-operator: ${o.config ?? 'config'}: ${err instanceof OperatorConfigError ? err.message : String(err)}\n`);
      process.exitCode = 2;
      return;
    }
    const kc = new k8s.KubeConfig();
    if (o.kubeconfig) kc.loadFromFile(o.kubeconfig);
    else kc.loadFromDefault();
    let running: Awaited<ReturnType<typeof runOperator>>;
    try {
      running = await runOperator(config, kc, log);
    } catch (err) {
      // A service log to the end: `kubectl logs --previous` says why in one JSON line.
      log.fatal({ err: err instanceof Error ? { message: err.message, code: (err as NodeJS.ErrnoException).code } : String(err) }, 'operator failed to start');
      process.exitCode = 1;
      return;
    }
    log.info({ roles: config.roles, ingestPort: running.ingestPort, metricsPort: running.metricsPort }, 'operator running');
    const stop = () => {
      log.info('stopping');
      running.stop().then(() => process.exit(0), (err: unknown) => { log.error({ err: String(err) }, 'stop failed'); process.exit(1); });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    void running.failed.then((err) => {
      // Exits for the Deployment to start it again: a replica that cannot lead must not hold the lease.
      log.fatal({ err: err.message }, 'the leader roles could not start; exiting');
      void running.stop().finally(() => process.exit(1));
    });
  });

program
  .command('crd')
  .description('print the IrqTrace CustomResourceDefinition (YAML)')
  .action(() => { process.stdout.write(irqTraceCrdYaml()); });

program
  .command('rbac')
  .description("print the operator's ServiceAccounts, roles and bindings (YAML)")
  .option('--namespace <ns>', "the operator's namespace", 'irqtrace-system')
  .option('--service-account <name>', "the operator's ServiceAccount", 'irqtrace-operator')
  .action((o: { namespace: string; serviceAccount: string }) => {
    process.stdout.write(rbacObjects({ namespace: o.namespace, serviceAccount: o.serviceAccount }).map((x) => stringify(x)).join('---\n'));
  });

await program.parseAsync();
