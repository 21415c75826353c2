// The IrqTrace API on a test cluster, as the chart installs it: the CRD
// (generated from the operator's schema) and the operator's namespace.
import { irqTraceCrdYaml } from '@irqtrace/operator';
import type { Cluster } from '../cluster/cluster.js';
import { waitUntil } from './wait.js';

/** Creates the CRD, waits until irqtraces are served, and creates the namespace. */
export async function installIrqTraceApi(cluster: Cluster, namespace = 'irqtrace-system'): Promise<void> {
  await cluster.kubectl(['create', '-f', '-'], irqTraceCrdYaml());
  await waitUntil('irqtraces served', 30_000, async () => (await cluster.kubectl(['get', 'irqtraces'])).code === 0);
  await cluster.kubectl(['create', 'namespace', namespace]);
}
