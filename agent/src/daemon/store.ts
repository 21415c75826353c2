// The standalone agent's local record of violations (machines outside
// Kubernetes): JSON lines, rotated at a size bound (one older file kept),
// listed and cleared by the CLI.
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

export class EventStore {
  constructor(
    readonly path: string,
    private readonly maxBytes = 64 * 1024 * 1024,
  ) {
    mkdirSync(dirname(path), { recursive: true });
  }

  append(event: object): void {
    appendFileSync(this.path, `${JSON.stringify({ recordedAt: new Date().toISOString(), ...event })}\n`);
    if (statSync(this.path).size > this.maxBytes) renameSync(this.path, `${this.path}.1`);
  }

  /** Every stored event, oldest first. */
  list(): unknown[] {
    const lines: string[] = [];
    for (const file of [`${this.path}.1`, this.path]) {
      if (existsSync(file)) lines.push(...readFileSync(file, 'utf8').split('\n').filter(Boolean));
    }
    return lines.map((l) => JSON.parse(l) as unknown);
  }

  clear(): void {
    rmSync(this.path, { force: true });
    rmSync(`${this.path}.1`, { force: true });
  }
}
