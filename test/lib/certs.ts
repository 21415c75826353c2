// Throwaway PKI for TLS tests, made with the openssl command: a CA, a server
// certificate for 127.0.0.1 and a name, and client certificates (mTLS).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratchDir } from './paths.js';

export interface Pem {
  cert: Buffer;
  key: Buffer;
}

export interface TestPki {
  ca: Buffer;
  server: Pem;
  client: Pem;
}

const openssl = (dir: string, ...args: string[]): void => {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
};

/** A CA and, signed by it, a server certificate (127.0.0.1, DNS serverName) and a client one. */
export function makePki(serverName = 'ingest.irqtrace.test'): TestPki {
  const dir = scratchDir('pki');
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=irqtrace test CA', '-keyout', 'ca.key', '-out', 'ca.pem');
  const leaf = (name: string, subject: string, ext: string): Pem => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', subject, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
    return { cert: readFileSync(join(dir, `${name}.pem`)), key: readFileSync(join(dir, `${name}.key`)) };
  };
  return {
    ca: readFileSync(join(dir, 'ca.pem')),
    server: leaf('server', `/CN=${serverName}`, `subjectAltName=IP:127.0.0.1,DNS:${serverName}\nextendedKeyUsage=serverAuth\n`),
    client: leaf('client', '/CN=node-a', 'extendedKeyUsage=clientAuth\n'),
  };
}
