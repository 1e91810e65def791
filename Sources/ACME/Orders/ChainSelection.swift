import CertificateKit
import SwiftASN1
import X509

/// Which of the chains a CA offers to serve (RFC 8555 §7.4.2 `alternate` links): the first
/// whose topmost certificate's issuer has the common name `preferred` (Let's Encrypt's
/// "ISRG Root X1", as certbot's and lego's `preferred_chain`), else the CA's default.
enum ChainSelection {
    /// - Parameter chains: PEM texts, the CA's default first.
    static func choose(_ chains: [String], preferred: String?) -> String? {
        guard let preferred else { return chains.first }
        for chain in chains {
            guard let documents = try? PEMDocument.parseMultiple(pemString: chain),
                  let top = documents.last,
                  let certificate = try? Certificate(derEncoded: top.derBytes) else { continue }
            if certificate.issuer.commonName == preferred { return chain }
        }
        return chains.first
    }
}
