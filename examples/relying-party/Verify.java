// Verify an HPKI physician card certificate the way a Java relying party does.
//
//   java Verify.java CERT ISSUING_CA ROOT [--crl | --defaults]     (PEM or DER files)
//
// Trust anchor: ROOT only, pinned out of band. ISSUING_CA is an untrusted
// intermediate, trusted because ROOT signed it. Revocation is hard-fail:
//   (default) the card by OCSP (the responder named in its AIA), the issuing CA by the
//             root's ARL (its CRL distribution point); OCSP failing falls back to the CRL;
//   --crl     CRLs only, from the CRL distribution points (com.sun.security.enableCRLDP);
//   --defaults Java's PKIX defaults (policy qualifiers rejected): shows that Java rejects
//             every HPKI card certificate unless setPolicyQualifiersRejected(false) is called.
//
// Prints "valid", "revoked: <reason> at <time> ..." or "invalid: <why>", then "role: ...".
// Exit status: 0 valid, 1 revoked, 2 invalid.
import java.io.FileInputStream;
import java.nio.charset.StandardCharsets;
import java.security.cert.*;
import java.util.*;

public class Verify {
    static final String HC_ACTOR = "1.0.17090.0.1"; // ISO 17090 hcRole attribute

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: java Verify.java CERT ISSUING_CA ROOT [--crl | --defaults]");
            System.exit(2);
        }
        String mode = args.length > 3 ? args[3] : "--ocsp";
        // Java fetches CRLs named in certificates only when this property is set,
        // before the first validation (it is read once). Needed in every mode here:
        // the issuing CA certificate has no OCSP, only the root's ARL.
        System.setProperty("com.sun.security.enableCRLDP", "true");

        CertificateFactory cf = CertificateFactory.getInstance("X.509"); // reads PEM and DER
        X509Certificate cert = read(cf, args[0]), issuing = read(cf, args[1]), root = read(cf, args[2]);
        List<String> roles = hcRoles(cert);

        CertPathValidator validator = CertPathValidator.getInstance("PKIX");
        PKIXParameters params = new PKIXParameters(Set.of(new TrustAnchor(root, null)));
        if (!mode.equals("--defaults")) {
            // HPKI's certificatePolicies is critical and carries a CPS qualifier (as
            // real MEDIS certificates do; RFC 5280 allows it). Java rejects that by
            // default: "critical policy qualifiers present in certificate".
            params.setPolicyQualifiersRejected(false);
        }
        PKIXRevocationChecker revocation = (PKIXRevocationChecker) validator.getRevocationChecker();
        if (mode.equals("--crl")) {
            revocation.setOptions(EnumSet.of(PKIXRevocationChecker.Option.PREFER_CRLS,
                    PKIXRevocationChecker.Option.NO_FALLBACK));
        } // else: OCSP first for each certificate, its CRL when it has no OCSP (the CA).
        params.addCertPathChecker(revocation); // replaces the built-in checker; hard-fail

        int status = 0;
        try {
            validator.validate(cf.generateCertPath(List.of(cert, issuing)), params);
            // keyUsage: [0] digitalSignature, [1] nonRepudiation. A signature on a
            // prescription needs the signing certificate's nonRepudiation.
            boolean[] ku = cert.getKeyUsage();
            if (ku == null || !(ku[0] || ku[1])) throw new CertificateException("no usable keyUsage");
            if (!roles.contains("Medical Doctor")) throw new CertificateException("no hcRole Medical Doctor");
            System.out.println("valid (" + (ku[1] ? "signing: nonRepudiation" : "authentication: digitalSignature") + ")");
        } catch (CertPathValidatorException e) {
            if (e.getReason() == CertPathValidatorException.BasicReason.REVOKED
                    && e.getCause() instanceof CertificateRevokedException r) {
                // The reason and time, from the OCSP response or the CRL entry;
                // the authority is who said so (OCSP signer or CRL issuer).
                System.out.println("revoked: " + camel(r.getRevocationReason()) + " at "
                        + r.getRevocationDate().toInstant() + " (by " + r.getAuthorityName()
                        + (e.getIndex() >= 0 ? ", certificate " + e.getIndex() + " of the path" : "") + ")");
                status = 1;
            } else {
                System.out.println("invalid: " + e.getReason() + ": " + e.getMessage());
                status = 2;
            }
        } catch (CertificateException e) {
            System.out.println("invalid: " + e.getMessage());
            status = 2;
        }
        System.out.println("role: " + (roles.isEmpty() ? "(none)" : String.join(", ", roles)));
        System.exit(status);
    }

    static X509Certificate read(CertificateFactory cf, String path) throws Exception {
        try (var in = new FileInputStream(path)) {
            return (X509Certificate) cf.generateCertificate(in);
        }
    }

    /** KEY_COMPROMISE -> keyCompromise, the RFC 5280 spelling. */
    static String camel(CRLReason reason) {
        String[] w = reason.name().toLowerCase(Locale.ROOT).split("_");
        StringBuilder s = new StringBuilder(w[0]);
        for (int i = 1; i < w.length; i++) s.append(Character.toUpperCase(w[i].charAt(0))).append(w[i].substring(1));
        return s.toString();
    }

    // hcRole: subjectDirectoryAttributes (2.5.29.9) holds the attribute 1.0.17090.0.1,
    // whose HCActor has codeDataFreeText [2] UTF8String "Medical Doctor"
    // (docs/profile.md). Java has no public ASN.1 parser, so a few lines of DER.
    static List<String> hcRoles(X509Certificate cert) {
        List<String> roles = new ArrayList<>();
        byte[] ext = cert.getExtensionValue("2.5.29.9"); // OCTET STRING wrapping the value
        if (ext == null) return roles;
        byte[] attributes = tlvs(tlvs(ext).get(0)[1]).get(0)[1]; // SEQUENCE OF Attribute
        for (byte[][] attribute : tlvs(attributes)) {
            List<byte[][]> typeAndValues = tlvs(attribute[1]);
            if (oid(typeAndValues.get(0)[1]).equals(HC_ACTOR)) walk(typeAndValues.get(1)[1], roles);
        }
        return roles;
    }

    static void walk(byte[] der, List<String> roles) {
        for (byte[][] tlv : tlvs(der)) {
            int tag = tlv[0][0] & 0xff;
            if (tag == 0xa2) { // [2] EXPLICIT codeDataFreeText
                for (byte[][] s : tlvs(tlv[1])) if ((s[0][0] & 0xff) == 0x0c) roles.add(new String(s[1], StandardCharsets.UTF_8));
            } else if ((tag & 0x20) != 0) walk(tlv[1], roles); // constructed: look inside
        }
    }

    /** The TLVs of a run of DER, each as {tag, content}. */
    static List<byte[][]> tlvs(byte[] b) {
        List<byte[][]> out = new ArrayList<>();
        for (int i = 0; i < b.length; ) {
            byte tag = b[i++];
            int n = b[i++] & 0xff;
            if ((n & 0x80) != 0) {
                int k = n & 0x7f;
                n = 0;
                while (k-- > 0) n = n << 8 | (b[i++] & 0xff);
            }
            out.add(new byte[][] {{tag}, Arrays.copyOfRange(b, i, i + n)});
            i += n;
        }
        return out;
    }

    static String oid(byte[] content) {
        List<Long> arcs = new ArrayList<>();
        long n = 0;
        for (byte x : content) {
            n = n << 7 | (x & 0x7f);
            if ((x & 0x80) == 0) { arcs.add(n); n = 0; }
        }
        long first = Math.min(arcs.get(0) / 40, 2);
        StringBuilder s = new StringBuilder(first + "." + (arcs.get(0) - 40 * first));
        for (int i = 1; i < arcs.size(); i++) s.append('.').append(arcs.get(i));
        return s.toString();
    }
}
