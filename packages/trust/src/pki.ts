/**
 * The oak PKI (docs/security.md): ECDSA P-256 keys, one self-signed CA per tree, leaf
 * certificates for the root's link (SAN `oak-root`) and for clusters (SAN `oak-cluster` plus
 * the cluster's name). Certificates are built with @peculiar/x509 on Node's webcrypto; keys are
 * PEM (PKCS#8 private, SPKI public) so that node:tls and grpc take them as they are.
 */
import type * as X509 from '@peculiar/x509';
import { X509Certificate, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { OakError } from '@oak/contracts';

type CryptoKey = webcrypto.CryptoKey;

let x509Lib: Promise<typeof X509> | undefined;
/**
 * The X.509 library, loaded at the first certificate made (about 18 MB of RSS and 200 ms): the
 * programs that only verify (cluster, worker, CLI) never load it.
 */
function lib(): Promise<typeof X509> {
  x509Lib ??= (async () => {
    // @peculiar/x509 (through tsyringe) needs the Reflect metadata API before it loads
    await import('reflect-metadata');
    const m = await import('@peculiar/x509');
    m.cryptoProvider.set(webcrypto as unknown as Parameters<typeof m.cryptoProvider.set>[0]);
    return m;
  })();
  return x509Lib;
}

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** certificates start a little in the past: edge devices' clocks drift */
const BACKDATE_MS = 60 * 60_000;

export interface KeyPair {
  /** PKCS#8 PEM */
  privateKeyPem: string;
  /** SPKI PEM */
  publicKeyPem: string;
}

export interface Ca {
  /** the CA certificate, PEM */
  certPem: string;
  /** its private key, PKCS#8 PEM */
  keyPem: string;
}

export interface IssueOptions {
  commonName: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  /** validity in days (default 365) */
  days?: number;
}

/** A fresh ECDSA P-256 key pair. */
export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** The SPKI PEM of a private key (PKCS#8 or SEC1 PEM). */
export function publicKeyOf(privateKeyPem: string): string {
  return createPublicKey(createPrivateKey(privateKeyPem)).export({ type: 'spki', format: 'pem' }).toString();
}

/** Checks that `pem` is an SPKI PEM of an ECDSA P-256 key; throws OakError('OAK_VALIDATION'). */
export function checkPublicKeyPem(pem: string): void {
  let ok = false;
  try {
    const k = createPublicKey({ key: pem, format: 'pem' });
    ok = k.type === 'public' && k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1';
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new OakError('OAK_VALIDATION', 'the public key is not an ECDSA P-256 key in SPKI PEM', {
      path: 'public_key',
      hint: 'send the PEM of a fresh P-256 key (generateKeyPair() in @oak/trust)',
    });
  }
}

function pemBody(pem: string, label: string): Buffer {
  const m = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`).exec(pem);
  if (!m || m[1] === undefined) throw new OakError('OAK_VALIDATION', `not a PEM ${label.toLowerCase()}`);
  return Buffer.from(m[1].replace(/\s+/g, ''), 'base64');
}

/** Every certificate of a PEM bundle, in order. */
export function splitPemChain(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----/g) ?? [];
}

async function importPrivate(pem: string): Promise<CryptoKey> {
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  return (await webcrypto.subtle.importKey('pkcs8', der, EC, false, ['sign']));
}

async function importPublic(pem: string): Promise<CryptoKey> {
  checkPublicKeyPem(pem);
  return (await webcrypto.subtle.importKey('spki', pemBody(pem, 'PUBLIC KEY'), EC, true, ['verify']));
}

/** A positive 128-bit serial number, hex. */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f | 0x10;
  return b.toString('hex');
}

/** Distinguished-name text for a common name, with the characters x509 names treat specially escaped. */
function cn(name: string): string {
  return `CN=${name.replace(/([,+"\\<>;=#])/g, '\\$1')}`;
}

/** SHA-256 of the certificate's DER (the first certificate of `pem`), 64 lower-case hex digits. */
export function caFingerprint(pem: string): string {
  const first = splitPemChain(pem)[0];
  if (first === undefined) throw new OakError('OAK_VALIDATION', 'no PEM certificate found');
  return createHash('sha256').update(pemBody(first, 'CERTIFICATE')).digest('hex');
}


/** A new self-signed CA (10 years by default). */
export async function createCa(opts: { commonName?: string; days?: number } = {}): Promise<Ca> {
  const x509 = await lib();
  const pair = generateKeyPair();
  const keys = { privateKey: await importPrivate(pair.privateKeyPem), publicKey: await importPublic(pair.publicKeyPem) };
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: cn(opts.commonName ?? `oak root CA ${randomBytes(4).toString('hex')}`),
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + (opts.days ?? 3650) * DAY_MS),
    keys,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: pair.privateKeyPem };
}

/** A leaf certificate (server and client auth) for `publicKeyPem`, signed by `ca`. Returns the leaf PEM alone. */
export async function issueCert(ca: Ca, publicKeyPem: string, opts: IssueOptions): Promise<string> {
  const x509 = await lib();
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importPrivate(ca.keyPem);
  const publicKey = await importPublic(publicKeyPem);
  const names: X509.JsonGeneralName[] = [];
  for (const d of opts.dnsNames ?? []) {
    if (!/^[A-Za-z0-9*]([A-Za-z0-9-.]{0,251}[A-Za-z0-9])?$/.test(d)) throw new OakError('OAK_VALIDATION', `${JSON.stringify(d)} is not a DNS name`, { path: 'dnsNames' });
    names.push({ type: 'dns', value: d });
  }
  for (const ip of opts.ipAddresses ?? []) {
    if (isIP(ip) === 0) throw new OakError('OAK_VALIDATION', `${JSON.stringify(ip)} is not an IP address`, { path: 'ipAddresses' });
    names.push({ type: 'ip', value: ip });
  }
  const now = Date.now();
  const extensions: X509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(caCert),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: cn(opts.commonName),
    issuer: caCert.subject,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + (opts.days ?? 365) * DAY_MS),
    publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGNING,
    extensions,
  });
  return cert.toString('pem') + '\n';
}

export interface IssuedIdentity {
  /** PKCS#8 PEM */
  keyPem: string;
  /** the leaf alone */
  certPem: string;
  /** leaf then CA: what a TLS server presents (`cert` option / grpc cert_chain) */
  chainPem: string;
}

/** A fresh key pair and its certificate: what a server presents. */
export async function issueIdentity(ca: Ca, opts: IssueOptions): Promise<IssuedIdentity> {
  const pair = generateKeyPair();
  const certPem = await issueCert(ca, pair.publicKeyPem, opts);
  return { keyPem: pair.privateKeyPem, certPem, chainPem: certPem + ca.certPem };
}

/** Checks that the CA's certificate and key belong together and that it is a CA; throws OakError. */
export function checkCa(ca: Ca): void {
  const cert = new X509Certificate(ca.certPem);
  if (!cert.ca) throw new OakError('OAK_VALIDATION', 'the CA certificate is not a CA (basic constraints)');
  if (!cert.checkPrivateKey(createPrivateKey(ca.keyPem))) throw new OakError('OAK_VALIDATION', 'the CA key does not belong to the CA certificate');
}
