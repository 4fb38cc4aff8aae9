import { X509Certificate } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import t from 'tap';
import { CORPORATE_CA_CN, certSerialHex, LAB_ROOT_CN, spkiSha256 } from '../harness/lab/pki.ts';
import { RunDir } from '../harness/lab/rundir.ts';
import { testPki } from './helpers/fixtures.ts';

t.test('lab root and corporate CA are distinct self-signed CAs', async (t) => {
  const { pki } = await testPki(t);
  const root = new X509Certificate(pki.labRoot.cert.certPem);
  const corp = new X509Certificate(pki.corporate.cert.certPem);
  t.equal(root.ca, true);
  t.equal(corp.ca, true);
  t.match(root.subject, `CN=${LAB_ROOT_CN}`);
  t.match(corp.subject, `CN=${CORPORATE_CA_CN}`);
  t.ok(root.verify(root.publicKey), 'root is self-signed');
  t.notOk(corp.verify(root.publicKey), 'corporate CA is not signed by the lab root');
  t.not(pki.labRoot.cert.spkiSha256, pki.corporate.cert.spkiSha256);
});

t.test('leaf certificates carry the SAN, are signed by their CA and cached', async (t) => {
  const { pki } = await testPki(t);
  const leafA = pki.labRoot.issueLeaf(['ras.flexxible.com']);
  const leaf = new X509Certificate(leafA.certPem);
  const root = new X509Certificate(pki.labRoot.cert.certPem);
  t.equal(leaf.subjectAltName, 'DNS:ras.flexxible.com');
  t.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey), 'issued and signed by the lab root');
  t.equal(leaf.ca, false);
  t.equal(leaf.checkHost('ras.flexxible.com'), 'ras.flexxible.com');
  t.equal(leaf.checkHost('evil.example'), undefined);
  t.equal(pki.labRoot.issueLeaf(['ras.flexxible.com']), leafA, 'second issue is cached');
  t.equal(spkiSha256(leafA.certPem), leafA.spkiSha256);
  const corpLeaf = pki.corporate.issueLeaf(['ras.flexxible.com']);
  t.not(corpLeaf.spkiSha256, leafA.spkiSha256, 'an inspection CA cannot present the origin key');
  const client = new X509Certificate(pki.deviceCa.issueLeaf(['device-1'], { clientAuth: true }).certPem);
  t.match(
    client.toLegacyObject().ext_key_usage ?? [],
    ['1.3.6.1.5.5.7.3.2'],
    'client leaf is for clientAuth',
  );
});

t.test('keys are written 0600 in the run directory and removed with it', async (t) => {
  const runDir = new RunDir('proxycheck-test-');
  const { createLabPki } = await import('../harness/lab/pki.ts');
  const pki = await createLabPki(runDir.path);
  const leaf = pki.labRoot.issueLeaf(['a.test']);
  for (const f of [pki.labRoot.cert.keyFile, pki.corporate.cert.keyFile, leaf.keyFile]) {
    t.equal(statSync(f).mode & 0o777, 0o600, `${f} is 0600`);
  }
  t.equal(statSync(runDir.path).mode & 0o777, 0o700, 'run directory is private');
  runDir.remove();
  t.notOk(existsSync(pki.labRoot.cert.keyFile), 'removed with the run directory');
});

t.test('certificate serials are positive and minimally encoded DER integers', async (t) => {
  // the random bytes that once made OpenSSL reject a leaf ("asn1 encoding routines::illegal padding")
  for (const first of [0x00, 0x80, 0xff, 0x7f, 0x01]) {
    const hex = certSerialHex(Buffer.from([first, 0x10, ...Array(14).fill(0xab)]));
    const b0 = Number.parseInt(hex.slice(0, 2), 16);
    t.ok(b0 >= 0x40 && b0 < 0x80, `first byte 0x${first.toString(16)} -> 0x${b0.toString(16)}`);
    t.equal(hex.length, 32);
  }
});
