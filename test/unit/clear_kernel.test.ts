// `irqtrace clear --kernel` writes to the module's control device: where the module is not loaded
// it says so, and makes no regular file in the device's place (it did: a later load then found a
// file where its device should be).
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { clearKernel } from '../../agent/src/cli/store_cmd.js';

describe('irqtrace clear --kernel', () => {
  let stderr: string[];
  beforeEach(() => {
    stderr = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
      stderr.push(String(chunk));
      return true;
    });
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('without the module, says so and creates nothing', () => {
    const dev = mkdtempSync(join(tmpdir(), 'irqtrace-dev-'));
    expect(clearKernel(dev)).toBe(1);
    expect(existsSync(join(dev, 'irqtrace_stats'))).toBe(false);
    expect(stderr.join('')).toMatch(/the irqtrace module is not loaded/);
  });

  it('with it, writes the clear command', () => {
    const dev = mkdtempSync(join(tmpdir(), 'irqtrace-dev-'));
    writeFileSync(join(dev, 'irqtrace_stats'), '');
    expect(clearKernel(dev)).toBe(0);
    expect(readFileSync(join(dev, 'irqtrace_stats'), 'utf8')).toBe('clear');
  });
});
