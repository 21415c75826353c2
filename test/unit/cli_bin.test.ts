// In a checkout, the irqtrace command is where npm puts a package's commands
// (node_modules/.bin, what `npx irqtrace` runs) once `npm ci` and `npm run build` ran.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../lib/paths.js';

describe('the irqtrace command in a checkout', () => {
  it('runs from node_modules/.bin, as npx irqtrace does', () => {
    const help = execFileSync(join(repoRoot, 'node_modules', '.bin', 'irqtrace'), ['--help'], { encoding: 'utf8' });
    expect(help).toContain('How long Linux keeps interrupts disabled, and who did it.');
    expect(help).toMatch(/^\s+record\b/m);
  });
});
