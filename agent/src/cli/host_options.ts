// The options every command that runs the kernel side shares: where the
// module or the loader is, and where the host's /proc and cgroups are.
import type { Command } from 'commander';
import type { BackendOptions } from '../backend/select.js';
import { DEFAULT_POD_LOGS } from './defaults.js';

export interface HostOptions {
  module?: string;
  moduleDir?: string;
  source?: string;
  hostUsrLib?: string;
  driverState?: string;
  dev: string;
  loader?: string;
  proc: string;
  cgroupRoot: string;
  podLogs: string;
}

export function addHostOptions(command: Command): Command {
  return command
    .option('--module <path>', 'kmod: this irqtrace.ko')
    .option('--module-dir <dir>', 'kmod: prebuilt modules as <dir>/<uname -r>/irqtrace.ko')
    .option('--source <dir>', "kmod: the module's source, built against /lib/modules/<uname -r>/build")
    .option('--host-usr-lib <dir>', "kmod: the host's /usr/lib, for Debian's headers (they link to its linux-kbuild-<version>)")
    .option('--driver-state <file>', "kmod: the state `irqtrace driver load` wrote (a pod's init container): load its module, build nothing, unload it at stop")
    .option('--dev <dir>', "kmod: where the host's /dev is (a container's own /dev never gets the module's devices, made at load)", '/dev')
    .option('--loader <path>', 'ebpf: the irqtrace-bpf loader')
    .option('--proc <dir>', 'where the host /proc is', '/proc')
    .option('--cgroup-root <dir>', 'where the host cgroup2 hierarchy is', '/sys/fs/cgroup')
    .option('--pod-logs <dir>', "where the kubelet's pod log directories are (<namespace>_<name>_<uid>): pods are named from them", DEFAULT_POD_LOGS);
}

export function backendOptionsOf(o: HostOptions): BackendOptions {
  return {
    kmod: {
      ...(o.module ? { modulePath: o.module } : {}),
      ...(o.moduleDir ? { moduleDir: o.moduleDir } : {}),
      ...(o.source ? { sourceDir: o.source } : {}),
      ...(o.hostUsrLib ? { hostUsrLib: o.hostUsrLib } : {}),
      ...(o.driverState ? { driverState: o.driverState } : {}),
      devRoot: o.dev,
    },
    ebpf: o.loader ? { loaderPath: o.loader } : {},
  };
}
