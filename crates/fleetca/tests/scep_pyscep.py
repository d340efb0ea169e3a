"""pyscep (PyPI 0.0.14), an independent SCEP client, driven by scep_pyscep.rs in the
virtual environment that .ci/run makes (target/pyscep-venv, or FLEETCA_PYSCEP_VENV).
pyscep builds, signs, encrypts, sends and reads every pkiMessage; this script only picks
the operation and writes what came back.

    python scep_pyscep.py URL caps
    python scep_pyscep.py URL enrol CSR.pem SIGNER.pem SIGNER.key OUT.pem
    python scep_pyscep.py URL poll CSR.pem SIGNER.pem SIGNER.key TRANSACTION_ID OUT.pem
    python scep_pyscep.py URL getcert SIGNER.pem SIGNER.key SERIAL_HEX OUT.pem
    python scep_pyscep.py URL getcrl SIGNER.pem SIGNER.key SERIAL_HEX OUT.crl

Options before URL: --cipher aes256|aes128|3des and --digest sha512|sha256|sha1 force the
envelope's cipher and the digest (pyscep otherwise takes the strongest that GetCACaps
offers). Prints one JSON line: {"status", "fail_info", "transaction_id", "count"}.

Two adaptations, both outside the messages pyscep makes:
- oscrypto 1.3.0 (pyscep's dependency, the latest on PyPI) cannot read the version of
  OpenSSL 3.0.10 and later ("3.0.19": its pattern wants one digit per part), fixed in its
  repository but never released; the pattern is widened while oscrypto is imported.
- pyscep takes as the encryption recipient only a certificate with keyEncipherment and
  without digitalSignature, else a CA certificate. fleetca's RA certificate has both
  (RFC 8894 section 2.2 allows one RA certificate for both), so the recipient is the
  non-CA certificate with keyEncipherment.
"""

import json
import re
import sys
import warnings

warnings.simplefilter("ignore")

_search = re.search


def _oscrypto_version_search(pattern, string, *args, **kwargs):
    if pattern == "\\b(\\d\\.\\d\\.\\d[a-z]*)\\b":
        pattern = "\\b(\\d+\\.\\d+\\.\\d+[a-z]*)\\b"
    return _search(pattern, string, *args, **kwargs)


re.search = _oscrypto_version_search
import oscrypto.asymmetric  # noqa: E402,F401

re.search = _search

from asn1crypto import csr as asn1_csr  # noqa: E402
from asn1crypto import pem  # noqa: E402
from scep.Client import client as scep_client  # noqa: E402
from scep.Client import responses  # noqa: E402
from scep.Client.certificate import Certificate  # noqa: E402
from scep.Client.privatekey import PrivateKey  # noqa: E402
from scep.Client.signingrequest import SigningRequest  # noqa: E402
from scep.Client.enums import PKIStatus  # noqa: E402


class RaCertificates(responses.CACertificates):
    def _CACertificates__recipient(self):
        for cert in self.certificates:
            if not cert.is_ca and "key_encipherment" in cert.key_usage:
                return cert
        return super()._CACertificates__recipient()


scep_client.CACertificates = RaCertificates


def force(cipher, digest):
    if cipher:
        responses.Capabilities.strongest_cipher = lambda self: cipher
    if digest:
        responses.Capabilities.strongest_message_digest = lambda self: digest
        responses.Capabilities.strongest_signature_algorithm = lambda self: digest


def report(result, out=None, write=None):
    line = {"status": result.status.name, "fail_info": None, "transaction_id": None, "count": 0}
    if result.status == PKIStatus.FAILURE:
        line["fail_info"] = result.fail_info
    elif result.status == PKIStatus.PENDING:
        line["transaction_id"] = result.transaction_id
    elif out is not None:
        line["count"] = write(result, out)
    print(json.dumps(line))


def write_certificates(result, out):
    certs = result.certificates or []
    with open(out, "wb") as f:
        for cert in certs:
            f.write(cert.to_pem())
    return len(certs)


def write_crl(result, out):
    if result.crl is None:
        return 0
    with open(out, "wb") as f:
        f.write(result.crl.to_der())
    return 1


def main(argv):
    cipher = digest = None
    while argv and argv[0].startswith("--"):
        if argv[0] == "--cipher":
            cipher = argv[1]
        elif argv[0] == "--digest":
            digest = argv[1]
        else:
            raise SystemExit("unknown option " + argv[0])
        argv = argv[2:]
    force(cipher, digest)
    url, op, args = argv[0], argv[1], argv[2:]
    client = scep_client.Client(url)
    if op == "caps":
        caps = client.get_ca_capabilities()
        print("\n".join(sorted(cap.value for cap in caps.caps)))
    elif op == "enrol":
        csr_file, cert_file, key_file, out = args
        result = client.enrol(
            csr=SigningRequest.from_pem_file(csr_file),
            identity=Certificate.from_pem_file(cert_file),
            identity_private_key=PrivateKey.from_pem_file(key_file),
        )
        report(result, out, write_certificates)
    elif op == "poll":
        csr_file, cert_file, key_file, transaction_id, out = args
        with open(csr_file, "rb") as f:
            _, _, der = pem.unarmor(f.read())
        subject = asn1_csr.CertificationRequest.load(der)["certification_request_info"]["subject"]
        result = client.poll(
            identity=Certificate.from_pem_file(cert_file),
            identity_private_key=PrivateKey.from_pem_file(key_file),
            subject=subject,
            transaction_id=transaction_id,
        )
        report(result, out, write_certificates)
    elif op in ("getcert", "getcrl"):
        cert_file, key_file, serial, out = args
        call = client.get_cert if op == "getcert" else client.get_crl
        result = call(
            identity=Certificate.from_pem_file(cert_file),
            identity_private_key=PrivateKey.from_pem_file(key_file),
            serial_number=int(serial, 16),
        )
        report(result, out, write_certificates if op == "getcert" else write_crl)
    else:
        raise SystemExit("unknown operation " + op)


if __name__ == "__main__":
    main(sys.argv[1:])
