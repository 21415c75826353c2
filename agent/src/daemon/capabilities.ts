// What this node's kernel offers, for the Hello (cheap checks of /proc and /sys).
import { readFile } from 'node:fs/promises';
import type { irqtrace } from '@irqtrace/proto';
import { exists } from '../util/fs.js';

export async function probeCapabilities(proc = '/proc', sys = '/sys'): Promise<irqtrace.v1.ICapabilities> {
  const kallsyms = await readFile(`${proc}/kallsyms`, 'utf8').catch(() => '');
  const modulesDisabled = (await readFile(`${proc}/sys/kernel/modules_disabled`, 'utf8').catch(() => '1')).trim();
  return {
    irqTracepoints: /\s__tracepoint_irq_disable$/m.test(kallsyms),
    kprobes: /\sregister_kprobe$/m.test(kallsyms),
    bpf: await exists(`${proc}/sys/kernel/unprivileged_bpf_disabled`),
    btf: await exists(`${sys}/kernel/btf/vmlinux`),
    kmodLoadable: modulesDisabled === '0' && (await exists(`${proc}/modules`)),
  };
}

export async function bootId(proc = '/proc'): Promise<string> {
  return (await readFile(`${proc}/sys/kernel/random/boot_id`, 'utf8').catch(() => 'unknown')).trim();
}
