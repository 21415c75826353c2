// NATS subjects of the event stream (DESIGN.md §3). Node and trace names may
// contain dots (DNS subdomains), which NATS reads as token separators: each
// name is made one token by percent-encoding every byte outside [A-Za-z0-9_-].
export const STREAM = 'IRQTRACE';
export const SUBJECT_ROOT = 'irqtrace';

export type SubjectKind = 'events' | 'hist' | 'state';

export function encodeToken(name: string): string {
  if (!name) throw new Error('a subject token cannot be empty');
  return [...Buffer.from(name, 'utf8')].map((b) => (/[A-Za-z0-9_-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
}

/** A name as a JetStream KV key token: KV keys allow [-/_=.A-Za-z0-9], so the subject token with '%' as '='. */
export function kvKeyToken(name: string): string {
  return encodeToken(name).replaceAll('%', '=');
}

export function decodeToken(token: string): string {
  return decodeURIComponent(token);
}

export function subject(trace: string, node: string, kind: SubjectKind): string {
  return `${SUBJECT_ROOT}.${encodeToken(trace)}.${encodeToken(node)}.${kind}`;
}

/** Everything about one trace: irqtrace.<trace>.> */
export function traceSubjects(trace: string): string {
  return `${SUBJECT_ROOT}.${encodeToken(trace)}.>`;
}

export function parseSubject(s: string): { trace: string; node: string; kind: SubjectKind } | undefined {
  const parts = s.split('.');
  if (parts.length !== 4 || parts[0] !== SUBJECT_ROOT) return undefined;
  const [, trace = '', node = '', kind] = parts;
  if (kind !== 'events' && kind !== 'hist' && kind !== 'state') return undefined;
  return { trace: decodeToken(trace), node: decodeToken(node), kind };
}
