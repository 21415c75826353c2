// The standalone agent's config file: the shipped example parses, and every
// mistake is refused with the field named.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LIMITS } from '@irqtrace/proto';
import { parseAgentConfig } from '../../agent/src/config/file.js';
import { repoRoot } from '../lib/paths.js';

describe('the agent config file', () => {
  it('reads the shipped example', () => {
    const c = parseAgentConfig(readFileSync(join(repoRoot, 'agent', 'systemd', 'config.yaml'), 'utf8'));
    expect(c).toMatchObject({ store: '/var/lib/irqtrace/events.jsonl', metricsPort: 9101 });
    expect(c.traces).toEqual([
      { name: 'latency', all: true, irqs: [], irqNames: [], thresholdNs: 500_000n, method: 'auto', backend: 'auto', periodNs: 1_000_000n, softirqs: false, stacks: true, endUnixNs: 0n },
    ]);
    expect(parseAgentConfig('traces:\n  - name: nic\n    target: [24, 25]\n').traces[0]).toMatchObject({ all: false, irqs: [24, 25], thresholdNs: LIMITS.thresholdNs.default, periodNs: LIMITS.periodNs.default });
  });

  it.each([
    ['traces:\n  - name: a\n    threshold: fast\n', /^traces\[0\]\.threshold: 'fast' is not a duration/],
    ['traces:\n  - name: a\n  - name: b\n    method: quick\n', /^traces\[1\]\.method: 'quick' is not one of auto, exact, sampled, hybrid$/],
    ['traces:\n  - name: Bad_Name\n', /^traces\[0\]\.name: 'Bad_Name' is not a DNS label/],
    ['traces:\n  - name: a\n    target: [24, -1]\n', /^traces\[0\]\.target\[1\]: '-1' is neither an IRQ number nor an IRQ name/],
    ['traces:\n  - name: a\n    target: []\n', /^traces\[0\]\.target: expected all, or a list of IRQ numbers and names/],
    ['traces:\n  - name: a\n  - name: a\n', /^traces\[1\]\.name: 'a' is used twice/],
    ['thresold: 5\n', /^thresold: not a setting/],
    ['metricsPort: 99999\n', /^metricsPort: expected a port number/],
    ['traces: [\n', /^not valid YAML/],
  ])('refuses %j', (text, message) => {
    expect(() => parseAgentConfig(text)).toThrow(message);
  });
});
