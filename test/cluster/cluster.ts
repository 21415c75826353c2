// A real Kubernetes control plane for tests: etcd, kube-apiserver and
// kube-controller-manager (and kube-scheduler when asked) on 127.0.0.1 with
// random free ports, RBAC on, service-account keys generated per cluster.
// Pods run only where guests join as nodes (test/node): for them the cluster
// has a token per node name (Node authorizer, NodeRestriction) and a client
// certificate to reach their kubelets; without nodes every API object,
// admission check, CRD validation and controller still works.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makePki } from '../lib/certs.js';
import { scratchDir } from '../lib/paths.js';
import { freePort } from '../lib/ports.js';
import { Service, run } from '../lib/process.js';
import type { RunResult } from '../lib/process.js';
import { waitUntil } from '../lib/wait.js';
import { binary } from './binaries.js';

export interface ClusterOptions {
  /** Also run kube-controller-manager (garbage collection, DaemonSet status, ...). Default true. */
  controllerManager?: boolean;
  /** Also run kube-scheduler (pods other than DaemonSets' need it). Default false. */
  scheduler?: boolean;
  /** Names of the nodes that may join (test/node): each gets a token of system:node:<name>. */
  nodes?: readonly string[];
  /**
   * Pod Security admission as hardened clusters configure it: enforce
   * baseline, warn and audit restricted, in every namespace not labelled
   * otherwise. Default false (the API server's own default: privileged).
   */
  podSecurity?: boolean;
}

/** What a guest needs to join the cluster as a node. */
export interface NodeCredentials {
  /** Bearer token of system:node:<name> in group system:nodes. */
  token: string;
  /** The API server's CA (its self-signed serving certificate). */
  caPem: string;
  /** CA of the API server's client certificate, for the kubelet's x509 authentication. */
  kubeletClientCaPem: string;
}

export interface Cluster {
  /** https://127.0.0.1:<port> */
  server: string;
  /** Path of an admin kubeconfig (user "admin" in system:masters). */
  kubeconfigPath: string;
  /** The same kubeconfig as YAML text, for KubeConfig.loadFromString. */
  kubeconfig: string;
  /** A kubeconfig for a user with no RBAC grants at all. */
  nobodyKubeconfigPath: string;
  /** Credentials of a node named in ClusterOptions.nodes. */
  nodeCredentials(name: string): NodeCredentials;
  /** Runs kubectl against this cluster as admin. */
  kubectl(args: readonly string[], input?: string): Promise<RunResult>;
  /** Runs helm against this cluster as admin. */
  helm(args: readonly string[]): Promise<RunResult>;
  /** The kubectl and helm binaries, for a person at a shell (with --kubeconfig / KUBECONFIG). */
  binaries: { kubectl: string; helm: string };
  /** Stops every process and removes the data; leaves nothing running. */
  stop(): Promise<void>;
}

function kubeconfigYaml(server: string, caPem: string, user: string, token: string): string {
  const ca = Buffer.from(caPem).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: irqtrace-test`,
    `  cluster: {server: "${server}", certificate-authority-data: "${ca}"}`,
    'users:',
    `- name: ${user}`,
    `  user: {token: "${token}"}`,
    'contexts:',
    `- name: ${user}@irqtrace-test`,
    `  context: {cluster: irqtrace-test, user: ${user}}`,
    `current-context: ${user}@irqtrace-test`,
    '',
  ].join('\n');
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const [etcdBin, apiserverBin, kcmBin, kubectlBin, helmBin] = await Promise.all([
    binary('etcd', 'etcd'),
    binary('kube', 'kube-apiserver'),
    binary('kube', 'kube-controller-manager'),
    binary('kube', 'kubectl'),
    binary('helm', 'helm'),
  ]);
  const work = scratchDir('cluster');
  const services: Service[] = [];
  const stop = async () => {
    for (const s of services.reverse()) await s.stop();
    rmSync(work, { recursive: true, force: true });
  };

  try {
    const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const etcd = new Service('etcd', etcdBin, [
      '--name', 'irqtrace-test',
      '--data-dir', join(work, 'etcd'),
      '--listen-client-urls', etcdUrl,
      '--advertise-client-urls', etcdUrl,
      '--listen-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-cluster', `irqtrace-test=http://127.0.0.1:${peerPort}`,
      // Tests do not need durability against power loss; fsync costs seconds.
      '--unsafe-no-fsync',
      '--log-level', 'warn',
    ], join(work, 'etcd.log'));
    services.push(etcd);
    await waitUntil('etcd /health', 60_000, async () => {
      if (!etcd.running) throw new Error(`etcd exited:\n${etcd.tail.slice(-3000)}`);
      const res = await fetch(`${etcdUrl}/health`).catch(() => undefined);
      return res?.ok === true;
    });

    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(work, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(join(work, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    const tokens = {
      admin: randomBytes(24).toString('hex'),
      kcm: randomBytes(24).toString('hex'),
      scheduler: randomBytes(24).toString('hex'),
      nobody: randomBytes(24).toString('hex'),
    };
    const nodeTokens = new Map((options.nodes ?? []).map((name) => [name, randomBytes(24).toString('hex')]));
    writeFileSync(
      join(work, 'tokens.csv'),
      [
        `${tokens.admin},admin,admin-uid,"system:masters"`,
        `${tokens.kcm},system:kube-controller-manager,kcm-uid`,
        `${tokens.scheduler},system:kube-scheduler,scheduler-uid`,
        `${tokens.nobody},nobody,nobody-uid`,
        ...[...nodeTokens].map(([name, token]) => `${token},system:node:${name},node-${name}-uid,"system:nodes"`),
        '',
      ].join('\n'),
    );
    // The API server's client certificate for kubelets (logs, exec, port-forward).
    const kubeletPki = makePki('kube-apiserver');
    const kubeletClient = { cert: join(work, 'kubelet-client.crt'), key: join(work, 'kubelet-client.key') };
    writeFileSync(kubeletClient.cert, kubeletPki.client.cert);
    writeFileSync(kubeletClient.key, kubeletPki.client.key, { mode: 0o600 });
    const admission = options.podSecurity ? [`--admission-control-config-file=${writeAdmissionConfig(work)}`] : [];

    const certDir = join(work, 'pki');
    const apiserver = new Service('kube-apiserver', apiserverBin, [
      '--etcd-servers', etcdUrl,
      '--bind-address', '127.0.0.1',
      '--advertise-address', '127.0.0.1',
      '--secure-port', String(apiPort),
      '--cert-dir', certDir,
      '--authorization-mode', 'Node,RBAC',
      '--enable-admission-plugins', 'NodeRestriction',
      ...admission,
      '--kubelet-client-certificate', kubeletClient.cert,
      '--kubelet-client-key', kubeletClient.key,
      // Nodes are guests whose kubelets are reached through forwards on 127.0.0.1 (test/node).
      '--kubelet-preferred-address-types', 'InternalIP',
      '--token-auth-file', join(work, 'tokens.csv'),
      '--service-account-key-file', join(work, 'sa.pub'),
      '--service-account-signing-key-file', join(work, 'sa.key'),
      '--service-account-issuer', 'https://kubernetes.default.svc',
      // Virtual addresses the API server allocates from; nothing is routed.
      '--service-cluster-ip-range', '10.96.0.0/16',
      // The agent DaemonSet may need privileged containers for some backends.
      '--allow-privileged=true',
      '--profiling=false',
      '--v=1',
    ], join(work, 'kube-apiserver.log'));
    services.push(apiserver);

    const server = `https://127.0.0.1:${apiPort}`;
    const caPath = join(certDir, 'apiserver.crt');
    // The self-signed serving cert appears before the port is ready.
    await apiserver.waitForOutput(/Serving securely on 127\.0\.0\.1/, 120_000);
    const caPem = readFileSync(caPath, 'utf8');
    const kubeconfig = kubeconfigYaml(server, caPem, 'admin', tokens.admin);
    const kubeconfigPath = join(work, 'admin.kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfig);
    const nobodyKubeconfigPath = join(work, 'nobody.kubeconfig');
    writeFileSync(nobodyKubeconfigPath, kubeconfigYaml(server, caPem, 'nobody', tokens.nobody));

    const kubectl = (args: readonly string[], input?: string) =>
      run(kubectlBin, ['--kubeconfig', kubeconfigPath, ...args], { timeoutMs: 60_000, ...(input === undefined ? {} : { input }) });
    await waitUntil('kube-apiserver /readyz', 120_000, async () => {
      if (!apiserver.running) throw new Error(`kube-apiserver exited:\n${apiserver.tail.slice(-3000)}`);
      const ready = await kubectl(['get', '--raw', '/readyz']);
      return ready.code === 0 && ready.stdout.trim() === 'ok';
    });

    if (options.controllerManager ?? true) {
      const kcmKubeconfig = join(work, 'kcm.kubeconfig');
      writeFileSync(kcmKubeconfig, kubeconfigYaml(server, caPem, 'system:kube-controller-manager', tokens.kcm));
      const kcm = new Service('kube-controller-manager', kcmBin, [
        '--kubeconfig', kcmKubeconfig,
        '--bind-address', '127.0.0.1',
        // No serving endpoint: nothing scrapes it in tests.
        '--secure-port', '0',
        '--leader-elect=false',
        '--use-service-account-credentials=true',
        '--service-account-private-key-file', join(work, 'sa.key'),
        '--root-ca-file', caPath,
        '--v=1',
      ], join(work, 'kube-controller-manager.log'));
      services.push(kcm);
      await kcm.waitForOutput(/Started controller|Starting controller/, 60_000);
    }
    if (options.scheduler) {
      const schedulerKubeconfig = join(work, 'scheduler.kubeconfig');
      writeFileSync(schedulerKubeconfig, kubeconfigYaml(server, caPem, 'system:kube-scheduler', tokens.scheduler));
      const scheduler = new Service('kube-scheduler', await binary('kube', 'kube-scheduler'), [
        '--kubeconfig', schedulerKubeconfig,
        '--authentication-kubeconfig', schedulerKubeconfig,
        '--authorization-kubeconfig', schedulerKubeconfig,
        '--bind-address', '127.0.0.1',
        '--secure-port', '0',
        '--leader-elect=false',
        '--v=1',
      ], join(work, 'kube-scheduler.log'));
      services.push(scheduler);
      await scheduler.waitForOutput(/Starting Kubernetes Scheduler/, 60_000);
    }

    return {
      server,
      kubeconfigPath,
      kubeconfig,
      nobodyKubeconfigPath,
      nodeCredentials: (name) => {
        const token = nodeTokens.get(name);
        if (!token) throw new Error(`node ${name} was not named in ClusterOptions.nodes`);
        return { token, caPem, kubeletClientCaPem: kubeletPki.ca.toString() };
      },
      kubectl,
      binaries: { kubectl: kubectlBin, helm: helmBin },
      helm: (args) =>
        run(helmBin, ['--kubeconfig', kubeconfigPath, ...args], {
          timeoutMs: 120_000,
          env: { ...process.env, HELM_CACHE_HOME: join(work, 'helm/cache'), HELM_CONFIG_HOME: join(work, 'helm/config'), HELM_DATA_HOME: join(work, 'helm/data') },
        }),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Pod Security admission's cluster default as hardened clusters set it:
 * enforce baseline, warn and audit restricted; namespaces opt out by label.
 */
function writeAdmissionConfig(work: string): string {
  const path = join(work, 'admission.yaml');
  writeFileSync(path, [
    'apiVersion: apiserver.config.k8s.io/v1',
    'kind: AdmissionConfiguration',
    'plugins:',
    '- name: PodSecurity',
    '  configuration:',
    '    apiVersion: pod-security.admission.config.k8s.io/v1',
    '    kind: PodSecurityConfiguration',
    '    defaults: {enforce: baseline, enforce-version: latest, audit: restricted, audit-version: latest, warn: restricted, warn-version: latest}',
    '    exemptions: {usernames: [], runtimeClasses: [], namespaces: [kube-system]}',
    '',
  ].join('\n'));
  return path;
}
