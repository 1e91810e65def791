import Foundation
import X509

/// Completes a leaf's chain from a set of known CA certificates (the bundled Let's
/// Encrypt intermediates, or any other set).
///
/// Links are found by Authority Key Identifier → Subject Key Identifier and issuer
/// name → subject name, and each is accepted only if its signature verifies. Roots
/// (self-signed) are anchors and are never part of a served chain; an expired
/// certificate is never used. When a CA exists in several variants (a new root's
/// intermediate and its cross-sign by an older root), the chain anchored at the
/// oldest root is chosen — the one the most clients trust — and among those the
/// shortest.
public struct ChainCompletion: Sendable {
    /// A complete path from one intermediate up to (not including) a root.
    struct Path: Sendable {
        var certificates: [ParsedCertificate]
        var anchor: Certificate
        var notAfter: Date { certificates.map(\.certificate.notValidAfter).min() ?? .distantFuture }
    }

    let intermediates: [ParsedCertificate]
    let roots: [Certificate]
    /// Intermediates and roots by subject, so a leaf from an unknown CA costs one hash lookup.
    let intermediatesBySubject: [DistinguishedName: [Int]]
    let rootsBySubject: [DistinguishedName: [Certificate]]
    /// For each intermediate (same index), every complete path starting at it.
    let pathsFrom: [[Path]]

    /// - Parameter certificates: the known CA certificates; self-signed ones are roots.
    public init(certificates: [ParsedCertificate]) {
        let roots = certificates.filter { $0.certificate.isSelfSigned }.map(\.certificate)
        let intermediates = certificates.filter { !$0.certificate.isSelfSigned }
        self.intermediates = intermediates
        self.roots = roots
        self.intermediatesBySubject = Dictionary(grouping: intermediates.indices, by: { intermediates[$0].certificate.subject })
        self.rootsBySubject = Dictionary(grouping: roots, by: \.subject)

        // issuers[i]: indices of intermediates that signed intermediate i.
        let issuers = intermediates.map { child in
            intermediates.indices.filter { intermediates[$0].der != child.der && child.certificate.isIssued(by: intermediates[$0].certificate) }
        }
        let anchors = intermediates.map { child in roots.filter { child.certificate.isIssued(by: $0) } }

        func paths(from index: Int, visited: Set<Int>) -> [Path] {
            let own = intermediates[index]
            var result = anchors[index].map { Path(certificates: [own], anchor: $0) }
            for parent in issuers[index] where !visited.contains(parent) {
                for tail in paths(from: parent, visited: visited.union([parent])) {
                    result.append(Path(certificates: [own] + tail.certificates, anchor: tail.anchor))
                }
            }
            return result
        }
        self.pathsFrom = intermediates.indices.map { paths(from: $0, visited: [$0]) }
    }

    /// The chain to serve after `leaf` (intermediates only, nearest first), or an empty
    /// array when no known CA issued it or no complete unexpired path exists.
    public func chain(for leaf: Certificate, at now: Date) -> [ParsedCertificate] {
        var best: Path?
        // A leaf issued by a root directly needs nothing after it.
        for root in rootsBySubject[leaf.issuer] ?? [] where root.notValidAfter > now && leaf.isIssued(by: root) {
            let direct = Path(certificates: [], anchor: root)
            if Self.isPreferred(direct, over: best) { best = direct }
        }
        for index in intermediatesBySubject[leaf.issuer] ?? [] {
            guard leaf.isIssued(by: intermediates[index].certificate) else { continue }
            for path in pathsFrom[index] where path.notAfter > now && Self.isPreferred(path, over: best) {
                best = path
            }
        }
        return best?.certificates ?? []
    }

    /// Older anchor first (more widely trusted), then the shorter chain.
    static func isPreferred(_ candidate: Path, over current: Path?) -> Bool {
        guard let current else { return true }
        if candidate.anchor.notValidBefore != current.anchor.notValidBefore {
            return candidate.anchor.notValidBefore < current.anchor.notValidBefore
        }
        return candidate.certificates.count < current.certificates.count
    }
}
