// A Sigstore TEST BACKEND, for tests only: the Fulcio, Rekor (v1) and timestamp-authority
// handlers of @sigstore/mock (published by the Sigstore project) behind one local HTTPS server,
// with fresh keys each run. It writes a Sigstore client trust configuration (trusted root +
// signing config, the format sigstore-python's --trust-config reads) naming this server, then
// prints {"port": N} on stdout once it listens. Nothing here is trusted by anything but the
// test that started it.
//
//   node server.js --key server.key --cert server.crt --trust-config out.json
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const https = require("https");
const mock = require("@sigstore/mock");
const asn1js = require("asn1js");
const pkijs = require("pkijs");

function option(name) {
  const at = process.argv.indexOf(name);
  if (at < 0 || at + 1 >= process.argv.length) {
    throw new Error(`missing ${name}`);
  }
  return process.argv[at + 1];
}

const FULCIO_PATH = "/api/v2/signingCert";

// The real Fulcio v2 API takes the identity token in the body or as a bearer token, and the
// CSR as protobuf-JSON bytes (base64 of the PEM). The mock's handler reads only the body form
// with a PEM string, so translate here: the handler then sees what real Fulcio would.
function fulcioRequest(req, raw) {
  const json = JSON.parse(raw.toString());
  const auth = req.headers.authorization || "";
  if (!json.credentials && auth.startsWith("Bearer ")) {
    json.credentials = { oidcIdentityToken: auth.slice("Bearer ".length) };
  }
  if (typeof json.certificateSigningRequest === "string" && !json.certificateSigningRequest.startsWith("-----")) {
    json.certificateSigningRequest = Buffer.from(json.certificateSigningRequest, "base64").toString();
  }
  return JSON.stringify(json);
}

const TSA_PATH = "/api/v1/timestamp";

// RFC 3161 clients (sigstore-python included) send a DER TimeStampReq; the mock's handler reads
// the JSON form that sigstore's timestamp-authority also accepts. Translate. The nonce is only
// echoed back (no client checks it against the request), so it is cut to 31 bits to fit the
// mock's number-typed field.
function timestampRequest(req, raw) {
  if (!(req.headers["content-type"] || "").startsWith("application/timestamp-query")) {
    return raw.toString();
  }
  const asn1 = asn1js.fromBER(new Uint8Array(raw).buffer);
  const tsq = new pkijs.TimeStampReq({ schema: asn1.result });
  const algorithm = tsq.messageImprint.hashAlgorithm.algorithmId;
  const nonce = tsq.nonce ? Number(BigInt("0x" + Buffer.from(tsq.nonce.valueBlock.valueHexView).toString("hex")) % 2147483647n) : undefined;
  return JSON.stringify({
    artifactHash: Buffer.from(tsq.messageImprint.hashedMessage.valueBlock.valueHexView).toString("base64"),
    hashAlgorithm: { "2.16.840.1.101.3.4.2.2": "sha384", "2.16.840.1.101.3.4.2.3": "sha512" }[algorithm] || "sha256",
    nonce,
    certificates: Boolean(tsq.certReq),
  });
}

const REKOR_PATH = "/api/v1/log/entries";

// Real Rekor does not log a proposed dsse/0.0.1 entry as sent: it stores the hashes of the
// envelope and payload and each signature with its verifier, and clients check that form.
// The mock logs the request as is, so canonicalise it the way Rekor does first.
function rekorEntry(raw) {
  const proposed = JSON.parse(raw.toString());
  const content = proposed.kind === "dsse" && proposed.spec && proposed.spec.proposedContent;
  if (!content) {
    return raw.toString();
  }
  const envelope = JSON.parse(content.envelope);
  const sha256 = (bytes) => crypto.createHash("sha256").update(bytes).digest("hex");
  return JSON.stringify({
    apiVersion: proposed.apiVersion,
    kind: "dsse",
    spec: {
      envelopeHash: { algorithm: "sha256", value: sha256(content.envelope) },
      payloadHash: { algorithm: "sha256", value: sha256(Buffer.from(envelope.payload, "base64")) },
      signatures: envelope.signatures.map((s) => ({ signature: s.sig, verifier: content.verifiers[0] })),
    },
  });
}

function keyPair() {
  return crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
}

function b64(bytes) {
  return Buffer.from(bytes.buffer ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes).toString("base64");
}

function spki(publicKey) {
  return publicKey.export({ format: "der", type: "spki" });
}

function trustConfig(base, ca, ctLog, ctKeys, tlogKeys, tsa, since) {
  const validFor = { start: since };
  const tlogSpki = spki(tlogKeys.publicKey);
  return {
    mediaType: "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
    trustedRoot: {
      mediaType: "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
      tlogs: [
        {
          baseUrl: base,
          hashAlgorithm: "SHA2_256",
          publicKey: { rawBytes: b64(tlogSpki), keyDetails: "PKIX_ECDSA_P256_SHA_256", validFor },
          logId: { keyId: b64(crypto.createHash("sha256").update(tlogSpki).digest()) },
        },
      ],
      certificateAuthorities: [
        {
          subject: { organization: "sigstore.mock", commonName: "sigstore" },
          uri: base,
          certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] },
          validFor,
        },
      ],
      ctlogs: [
        {
          baseUrl: base,
          hashAlgorithm: "SHA2_256",
          publicKey: { rawBytes: b64(spki(ctKeys.publicKey)), keyDetails: "PKIX_ECDSA_P256_SHA_256", validFor },
          logId: { keyId: b64(ctLog.logID) },
        },
      ],
      timestampAuthorities: [
        {
          subject: { organization: "sigstore.mock", commonName: "sigstore-tsa" },
          uri: `${base}/api/v1/timestamp`,
          certChain: {
            certificates: [{ rawBytes: b64(tsa.intCertificate) }, { rawBytes: b64(tsa.rootCertificate) }],
          },
          validFor,
        },
      ],
    },
    signingConfig: {
      mediaType: "application/vnd.dev.sigstore.signingconfig.v0.2+json",
      caUrls: [{ url: base, majorApiVersion: 1, validFor, operator: "mochi-pybridge-test-backend" }],
      oidcUrls: [],
      rekorTlogUrls: [{ url: base, majorApiVersion: 1, validFor, operator: "mochi-pybridge-test-backend" }],
      tsaUrls: [
        { url: `${base}/api/v1/timestamp`, majorApiVersion: 1, validFor, operator: "mochi-pybridge-test-backend" },
      ],
      rekorTlogConfig: { selector: "ANY" },
      tsaConfig: { selector: "ANY" },
    },
  };
}

async function main() {
  const server = https.createServer({ key: fs.readFileSync(option("--key")), cert: fs.readFileSync(option("--cert")) });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;
  const base = `https://127.0.0.1:${port}`;
  const since = new Date(Date.now() - 60_000).toISOString();

  const ctKeys = keyPair();
  const tlogKeys = keyPair();
  const ctLog = await mock.initializeCTLog(ctKeys);
  const ca = await mock.initializeCA(keyPair(), ctLog);
  const tlog = await mock.initializeTLog(base, tlogKeys);
  const tsa = await mock.initializeTSA(keyPair());
  const handlers = [mock.fulcioHandler(ca), mock.rekorHandler(tlog), mock.tsaHandler(tsa)];

  server.on("request", (req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", async () => {
      const path = new URL(req.url, base).pathname;
      const handler = handlers.find((h) => h.path === path);
      process.stderr.write(`${req.method} ${path}\n`);
      if (!handler || req.method !== "POST") {
        res.writeHead(404, { "Content-Type": "text/plain" });
        res.end("not found");
        return;
      }
      const raw = Buffer.concat(chunks);
      const body =
        path === FULCIO_PATH ? fulcioRequest(req, raw) : path === REKOR_PATH ? rekorEntry(raw) : path === TSA_PATH ? timestampRequest(req, raw) : raw.toString();
      const result = await handler.fn(body);
      res.writeHead(result.statusCode, { "Content-Type": result.contentType || "text/plain" });
      res.end(typeof result.response === "string" ? result.response : Buffer.from(result.response.buffer, result.response.byteOffset, result.response.byteLength));
    });
  });

  const config = trustConfig(base, ca, ctLog, ctKeys, tlogKeys, tsa, since);
  fs.writeFileSync(option("--trust-config"), JSON.stringify(config, null, 2));
  process.stdout.write(JSON.stringify({ port }) + "\n");
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
