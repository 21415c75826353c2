// The slice of /proc the agent reads, behind an interface so that a
// containerised agent can point it at the host's /proc (e.g. /host/proc) and
// unit tests at a directory of samples.
import { open, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface ProcFs {
  /** The text of <root>/<path>, or undefined when it does not exist (gone, or not allowed). */
  read(path: string): Promise<string | undefined>;
  /**
   * The bytes of <root>/<path> in chunks, for large files parsed as they are
   * read (kallsyms): one buffer, reused for every chunk. Throws when the
   * file cannot be opened.
   */
  chunks(path: string): AsyncIterable<Buffer>;
  list(path: string): Promise<string[]>;
  link(path: string): Promise<string | undefined>;
}

const CHUNK_BYTES = 256 * 1024;

export function procFs(root = '/proc'): ProcFs {
  return {
    async read(path) {
      try {
        return await readFile(join(root, path), 'utf8');
      } catch {
        return undefined;
      }
    },
    async *chunks(path) {
      const file = await open(join(root, path));
      try {
        const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
        for (;;) {
          const { bytesRead } = await file.read(buffer, 0, CHUNK_BYTES, null);
          if (!bytesRead) return;
          yield buffer.subarray(0, bytesRead);
        }
      } finally {
        await file.close();
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
