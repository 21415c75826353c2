// The slice of /proc the agent reads, behind an interface so that a
// containerised agent can point it at the host's /proc (e.g. /host/proc) and
// unit tests at a directory of samples.
import { readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface ProcFs {
  /** The text of <root>/<path>, or undefined when it does not exist (gone, or not allowed). */
  read(path: string): Promise<string | undefined>;
  list(path: string): Promise<string[]>;
  link(path: string): Promise<string | undefined>;
}

export function procFs(root = '/proc'): ProcFs {
  return {
    async read(path) {
      try {
        return await readFile(join(root, path), 'utf8');
      } catch {
        return undefined;
      }
    },
    async list(path) {
      try {
        return await readdir(join(root, path));
      } catch {
        return [];
      }
    },
    async link(path) {
      try {
        return await readlink(join(root, path));
      } catch {
        return undefined;
      }
    },
  };
}
