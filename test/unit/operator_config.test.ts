import { describe, expect, it } from 'vitest';
import { parseOperatorConfig } from '../../operator/src/config.js';

describe("the operator's config", () => {
  it('fills in every default from nothing', () => {
    const c = parseOperatorConfig('');
    expect(c).toMatchObject({ namespace: 'irqtrace-system', roles: ['controller', 'ingest', 'status'], leaderElection: { enabled: true }, ingest: { listen: '127.0.0.1:9443', maxPendingPerAgent: 32 }, metrics: { listen: '127.0.0.1:9102' } });
    expect(parseOperatorConfig('agents: {tolerations: [{key: dedicated, operator: Equal, value: rt, effect: NoSchedule}], resources: {limits: {memory: 256Mi}}}').agents).toMatchObject({ image: 'ghcr.io/irqtrace/agent:0.1.0', tolerations: [{ key: 'dedicated', effect: 'NoSchedule' }], resources: { limits: { memory: '256Mi' } } });
  });

  it.each([
    ['roles: [controller, dance]', 'roles[1]: Expected union value'],
    ['agents: {image: 3}', 'agents.image: Expected string'],
    ['nats: {servers: ["http://nats:4222"]}', "nats.servers[0]: Expected string to match '^(nats|tls)://'"],
    ['agents: {tolerations: [{effect: Sometimes}]}', 'agents.tolerations[0].effect: Expected union value'],
    ['ingest: {listen: everywhere}', 'ingest.listen: Expected string to match'],
    ['bogus: 1', 'bogus: Unexpected property'],
    ['roles: [', 'not valid YAML'],
  ])('refuses %j naming the field', (text, message) => {
    expect(() => parseOperatorConfig(text)).toThrow(message);
  });
});
