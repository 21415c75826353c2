// Small file-system questions the backends and the capability probe ask.
import { access } from 'node:fs/promises';

/** Whether path exists (and this process may look at it). */
export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
