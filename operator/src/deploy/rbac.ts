// What the operator may do in the cluster, and nothing more: the one source
// of its RBAC objects (the Helm chart renders these; the RBAC test holds the
// operator to them). Agents get a ServiceAccount with no rights and no token.
import { API_GROUP, PLURAL } from '../api/crd.js';

export interface RbacNames {
  /** The operator's namespace (its DaemonSet, Lease and ServiceAccount live there). */
  namespace: string;
  serviceAccount: string;
}

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
type Json = Record<string, unknown>;

/** Cluster-wide: the traces (cluster-scoped), and reading nodes and pods' metadata. */
export const CLUSTER_RULES: Rule[] = [
  // Finalizers are metadata patches; owner references to traces need finalizers/update.
  { apiGroups: [API_GROUP], resources: [PLURAL], verbs: ['get', 'list', 'watch', 'patch'] },
  { apiGroups: [API_GROUP], resources: [`${PLURAL}/status`], verbs: ['get', 'patch'] },
  { apiGroups: [API_GROUP], resources: [`${PLURAL}/finalizers`], verbs: ['update'] },
  // Node labels decide which traces a node gets.
  { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] },
  // Pod UID -> namespace/name (the informer asks for metadata only; RBAC has no finer verb).
  { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
];

/** In the operator's namespace: the agent DaemonSet and the leader Lease. */
export const NAMESPACE_RULES: Rule[] = [
  { apiGroups: ['apps'], resources: ['daemonsets'], verbs: ['get', 'list', 'watch', 'create', 'patch', 'update', 'delete'] },
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
];

/** Its own namespace only: the Pod Security label that admits the agents (agents.podSecurityLabel). */
export function ownNamespaceRules(namespace: string): Rule[] {
  return [{ apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'patch'], resourceNames: [namespace] }];
}

/** Events about cluster-scoped objects are written to the default namespace. */
export const EVENT_RULES: Rule[] = [{ apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] }];

/** The ServiceAccounts, roles and bindings, as Kubernetes objects. */
export function rbacObjects(n: RbacNames): Json[] {
  const subject = { kind: 'ServiceAccount', name: n.serviceAccount, namespace: n.namespace };
  const labels = { 'app.kubernetes.io/name': 'irqtrace', 'app.kubernetes.io/component': 'operator' };
  const role = (kind: string, name: string, namespace: string | undefined, rules: Rule[]): Json => ({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind,
    metadata: { name, ...(namespace ? { namespace } : {}), labels },
    rules,
  });
  const binding = (kind: string, name: string, namespace: string | undefined, roleKind: string): Json => ({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind,
    metadata: { name, ...(namespace ? { namespace } : {}), labels },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: roleKind, name },
    subjects: [subject],
  });
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: n.serviceAccount, namespace: n.namespace, labels } },
    // The agents': no rules bound, no token mounted (the DaemonSet says so too).
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'irqtrace-agent', namespace: n.namespace, labels: { ...labels, 'app.kubernetes.io/component': 'agent' } }, automountServiceAccountToken: false },
    role('ClusterRole', 'irqtrace-operator', undefined, CLUSTER_RULES),
    binding('ClusterRoleBinding', 'irqtrace-operator', undefined, 'ClusterRole'),
    role('ClusterRole', 'irqtrace-operator-namespace', undefined, ownNamespaceRules(n.namespace)),
    binding('ClusterRoleBinding', 'irqtrace-operator-namespace', undefined, 'ClusterRole'),
    role('Role', 'irqtrace-operator', n.namespace, NAMESPACE_RULES),
    binding('RoleBinding', 'irqtrace-operator', n.namespace, 'Role'),
    role('Role', 'irqtrace-operator-events', 'default', EVENT_RULES),
    binding('RoleBinding', 'irqtrace-operator-events', 'default', 'Role'),
  ];
}
