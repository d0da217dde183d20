/**
 * One verification policy for a TLS peer's certificate on every runtime,
 * and the reason in words when it fails.
 *
 * Deno verifies with rustls (webpki), Bun and Node with OpenSSL, and they
 * disagree at the edges: webpki refuses a certificate marked CA:TRUE as the
 * server's own (so a self-signed `openssl req -x509` certificate, CA:TRUE by
 * default in OpenSSL 3, given as its own CA verifies on Bun and Node and
 * fails on Deno), and never falls back to the subject's CN for the name.
 * The policy is webpki's, the strictest: on Bun and Node the adapters check
 * the certificate further after OpenSSL has ({@link extraFault}).
 *
 * Every failure names its reason from the certificate itself (read with
 * node:crypto's X509Certificate, which all three runtimes have), so the
 * same certificate fails with the same words everywhere.
 *
 * @module
 */
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import tls from "node:tls";

/** What a runtime said was wrong with a certificate, in broad classes. */
export type CertFault =
  | "ca-as-leaf"
  | "untrusted"
  | "name"
  | "expired"
  | "not-yet-valid"
  | "other";

/**
 * The class of a runtime's verification error: an OpenSSL code as Bun and
 * Node report it (`s.authorizationError`), or a rustls message on Deno.
 */
export function faultOf(said: string): CertFault {
  if (/CaUsedAsEndEntity/.test(said)) return "ca-as-leaf";
  if (/ALTNAME|not valid for name|NotValidForName/i.test(said)) return "name";
  if (/CERT_NOT_YET_VALID|NotValidYet|not valid yet/i.test(said)) return "not-yet-valid";
  if (/CERT_HAS_EXPIRED|expired/i.test(said)) return "expired";
  if (/SELF_SIGNED|UnknownIssuer|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY_LEAF/i.test(said)) {
    return "untrusted";
  }
  return "other";
}

/** The certificates of a PEM bundle (unreadable ones left out). */
function bundle(pem: string | undefined): X509Certificate[] {
  if (pem === undefined) return [];
  const found = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const out: X509Certificate[] = [];
  for (const one of found) {
    try {
      out.push(new X509Certificate(one));
    } catch { /* not a certificate: the runtime reports the bundle */ }
  }
  return out;
}

/** The name to verify without brackets ("[::1]" is "::1"). */
function bare(name: string): string {
  return name.startsWith("[") && name.endsWith("]") ? name.slice(1, -1) : name;
}

/** Whether `cert` is valid for `name` by its subjectAltName alone (as webpki). */
export function nameMatches(cert: X509Certificate, name: string): boolean {
  const n = bare(name);
  if (isIP(n) !== 0) return cert.checkIP(n) !== undefined;
  return cert.checkHost(n, { subject: "never" }) !== undefined;
}

function selfSigned(cert: X509Certificate): boolean {
  try {
    return cert.checkIssued(cert) && cert.verify(cert.publicKey);
  } catch {
    return false;
  }
}

/** "CN=a.test" from a subject or issuer ("CN=a\nO=b" in node:crypto). */
function dn(s: string): string {
  return s.split("\n").filter((p) => p !== "").join(", ") || "an empty name";
}

/** "a.test, 127.0.0.1", or "no names" when the certificate has none. */
function namesOf(cert: X509Certificate): string {
  const san = cert.subjectAltName;
  if (san === undefined || san === "") return `no names (subject ${dn(cert.subject)})`;
  return san.split(", ").map((e) => e.replace(/^(DNS|IP Address):/, "")).join(", ");
}

function iso(date: string): string {
  const d = new Date(date);
  return Number.isNaN(d.getTime()) ? date : d.toISOString().replace(".000Z", "Z");
}

/**
 * A fault OpenSSL lets pass and webpki does not, for a certificate that
 * OpenSSL verified: a CA certificate as the server's own, a name only in the
 * subject's CN.
 */
export function extraFault(cert: X509Certificate, name: string): CertFault | undefined {
  if (cert.ca) return "ca-as-leaf";
  if (!nameMatches(cert, name)) return "name";
  return undefined;
}

/**
 * Why a certificate does not verify, in words: the first fault of the
 * certificate itself in a fixed order (self-signed, dates, a CA as the
 * server's certificate, the name), else the runtime's class of fault.
 *
 * @param peer The peer's certificate, when it could be read.
 * @param name The name verified (the server name or the host connected to).
 * @param ca The CA bundle given (PEM), undefined for the runtime's own CAs.
 * @param said The runtime's own error code or message.
 * @param fault Its class, when the runtime did not say it.
 * @param now The time to check the dates against.
 */
export function certificateReason(
  peer: X509Certificate | undefined,
  name: string,
  ca: string | undefined,
  said: string,
  fault: CertFault = faultOf(said),
  now: Date = new Date(),
): string {
  const trusted = ca === undefined ? "the runtime's trusted CAs" : "the CAs given";
  if (peer === undefined) {
    // the certificate could not be read: the runtime's class of fault
    switch (fault) {
      case "ca-as-leaf":
        return "the certificate is marked CA:TRUE, so it cannot be the server's own";
      case "name":
        return `name mismatch: the certificate is not for ${bare(name)}`;
      case "expired":
        return "expired";
      case "not-yet-valid":
        return "not valid yet";
      case "untrusted":
        return `unknown CA: the certificate is not issued by ${trusted}`;
      default:
        return said;
    }
  }
  const subject = dn(peer.subject);
  if (selfSigned(peer)) {
    const given = bundle(ca).some((c) => c.raw.equals(peer.raw));
    if (given && peer.ca) {
      return `self-signed certificate used as its own CA: ${subject} is marked CA:TRUE, so it ` +
        "cannot also be the server's certificate (make it with basicConstraints=CA:FALSE, " +
        "or sign a server certificate with it)";
    }
    if (!given) return `self-signed certificate not trusted: ${subject} is not among ${trusted}`;
  }
  const from = new Date(peer.validFrom), to = new Date(peer.validTo);
  if (now.getTime() > to.getTime()) return `expired on ${iso(peer.validTo)}`;
  if (now.getTime() < from.getTime()) return `not valid before ${iso(peer.validFrom)}`;
  if (peer.ca) {
    return `a CA certificate used as the server's certificate: ${subject} is marked CA:TRUE`;
  }
  if (!nameMatches(peer, name)) {
    return `name mismatch: certificate is for ${namesOf(peer)}, connected to ${bare(name)}`;
  }
  if (fault === "untrusted") {
    return `unknown CA: ${subject} is issued by ${dn(peer.issuer)}, which is not among ${trusted}`;
  }
  return said;
}

/**
 * The error a certificate that does not verify becomes before the adapter
 * wraps it: code CERT_UNTRUSTED, the reason in words, the runtime's own
 * error (when it had one) as the cause.
 */
export function certificateError(reason: string, cause: unknown): Error {
  return Object.assign(new Error(reason, cause === undefined ? undefined : { cause }), {
    code: "CERT_UNTRUSTED",
    certificateReason: reason,
  });
}

/** The reason a certificate error carries, if it is one. */
export function reasonOf(err: unknown): string | undefined {
  const r = (err as { certificateReason?: unknown } | null | undefined)?.certificateReason;
  return typeof r === "string" ? r : undefined;
}

/**
 * Read the certificate a TLS server presents, without trusting it (to say
 * why it did not verify). Resolves undefined when it cannot within `ms`.
 */
export function fetchPeerCertificate(
  host: string,
  port: number,
  servername: string | undefined,
  ms: number,
): Promise<X509Certificate | undefined> {
  return new Promise((resolve) => {
    let s: tls.TLSSocket | undefined;
    const done = (cert: X509Certificate | undefined) => {
      clearTimeout(timer);
      s?.destroy();
      resolve(cert);
    };
    const timer = setTimeout(() => done(undefined), Math.max(1, ms));
    try {
      const sni = servername === undefined || isIP(bare(servername)) !== 0 ? undefined : servername;
      s = tls.connect(
        { host: bare(host), port, servername: sni, rejectUnauthorized: false },
        () => {
          try {
            done(s?.getPeerX509Certificate());
          } catch {
            done(undefined);
          }
        },
      );
    } catch {
      clearTimeout(timer);
      resolve(undefined);
      return;
    }
    s.on("error", () => done(undefined));
  });
}
