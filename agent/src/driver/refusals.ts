// What makes a kernel refuse any module we could load, read before minutes of
// building (insmod would only say EPERM): the driver loader and the module
// backend ask the same questions and give the same reasons.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Why this kernel loads no module at all (kernel.modules_disabled=1), if it does not. */
export async function modulesDisabled(procRoot = '/proc'): Promise<string | undefined> {
  const disabled = (await readFile(join(procRoot, 'sys/kernel/modules_disabled'), 'utf8').catch(() => '0')).trim();
  return disabled === '1' ? 'module loading is disabled on this node (kernel.modules_disabled=1)' : undefined;
}

/** Why this kernel loads no unsigned module (lockdown), if it does not. */
export async function lockedDown(sysRoot = '/sys'): Promise<string | undefined> {
  const mode = /\[(integrity|confidentiality)\]/.exec(await readFile(join(sysRoot, 'kernel/security/lockdown'), 'utf8').catch(() => ''));
  return mode ? `the kernel is locked down (${mode[1] ?? ''}): it loads no unsigned module` : undefined;
}
