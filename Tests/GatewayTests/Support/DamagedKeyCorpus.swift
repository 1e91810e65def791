import CertificateTestSupport
import Foundation

/// Damaged forms of one private key (and a certificate for it), as an operator or an
/// attacker would hand them to certgate: cut at many offsets, bits flipped, under the wrong
/// PEM label, as base64 of the PEM or of the DER, as hex, inline or in a file — and the
/// pieces of that key that must never come back in any output.
struct DamagedKeyCorpus {
    /// One `certificates:` entry; `tlsCert` / `tlsKey` are the YAML values (a path
    /// relative to the fixture, inline PEM, or base64).
    struct Item {
        let name: String
        let tlsCert: String
        let tlsKey: String?
        let domains: String?
    }

    let leaf: TestCertificate
    let items: [Item]
    /// Files to write into the fixture (path → content) before the entries are used.
    let files: [String: String]
    /// Every 16-character window of the key's PKCS#8 and SEC1 base64, of the base64 of its
    /// PEM, and of its DER in hex (both cases).
    let secretWindows: Set<Substring>

    init(authority: TestCertificate) {
        let key = TestKey.make()
        leaf = authority.leaf(dnsNames: ["corpus.test"], key: key)
        let pkcs8 = key.pkcs8PEM
        let sec1 = key.sec1PEM!
        let pkcs8Body = Self.body(of: pkcs8)
        let sec1Body = Self.body(of: sec1)
        let der = Data(base64Encoded: pkcs8Body)!
        let hex = der.map { String(format: "%02x", $0) }.joined()
        let base64OfPEM = Data(pkcs8.utf8).base64EncodedString()

        var items: [Item] = []
        var files: [String: String] = ["corpus/leaf.pem": leaf.pem]
        func file(_ name: String, _ content: String) -> String {
            files["corpus/\(name)"] = content
            return "corpus/\(name)"
        }
        let cert = "corpus/leaf.pem"
        // Cut at many offsets: inside the BEGIN line, at its end, through the base64, just before END.
        for offset in [10, 27, 28, 40, 64, 93, 120, 150, 180, pkcs8.utf8.count - 30, pkcs8.utf8.count - 1] {
            let torn = String(decoding: Array(pkcs8.utf8.prefix(offset)), as: UTF8.self)
            items.append(Item(name: "torn-file-\(offset)", tlsCert: cert, tlsKey: file("torn-\(offset).key", torn), domains: nil))
        }
        for offset in [64, 150, pkcs8.utf8.count - 1] {
            let torn = String(decoding: Array(pkcs8.utf8.prefix(offset)), as: UTF8.self)
            items.append(Item(name: "torn-inline-\(offset)", tlsCert: cert, tlsKey: torn, domains: nil))
        }
        let sec1Torn = String(decoding: Array(sec1.utf8.prefix(130)), as: UTF8.self)
        items.append(Item(name: "torn-sec1", tlsCert: cert, tlsKey: file("torn-sec1.key", sec1Torn), domains: nil))
        // One base64 character changed at several places (some give another valid key).
        for position in [0, 7, 20, 45, 70, 100, 130, 160] where position < pkcs8Body.count {
            var characters = Array(pkcs8Body)
            characters[position] = characters[position] == "A" ? "B" : "A"
            let flipped = "-----BEGIN PRIVATE KEY-----\n" + Self.wrap(String(characters)) + "-----END PRIVATE KEY-----\n"
            items.append(Item(name: "flip-\(position)", tlsCert: cert, tlsKey: file("flip-\(position).key", flipped), domains: nil))
        }
        // Wrong labels, the key where the certificate belongs, a key and no certificate.
        items.append(Item(name: "label-certificate", tlsCert: cert,
                          tlsKey: pkcs8.replacingOccurrences(of: "PRIVATE KEY", with: "CERTIFICATE"), domains: nil))
        items.append(Item(name: "label-rsa", tlsCert: cert,
                          tlsKey: pkcs8.replacingOccurrences(of: "PRIVATE KEY", with: "RSA PRIVATE KEY"), domains: nil))
        items.append(Item(name: "label-public", tlsCert: cert,
                          tlsKey: file("public.key", pkcs8.replacingOccurrences(of: "PRIVATE KEY", with: "PUBLIC KEY")), domains: nil))
        items.append(Item(name: "key-as-cert", tlsCert: pkcs8, tlsKey: pkcs8, domains: nil))
        items.append(Item(name: "key-only", tlsCert: file("key-only.pem", pkcs8), tlsKey: nil, domains: nil))
        // Base64 of the PEM cut short, base64 of the DER, hex of the DER.
        for cut in [20, 101, base64OfPEM.count - 3] {
            items.append(Item(name: "base64-pem-\(cut)", tlsCert: cert, tlsKey: String(base64OfPEM.prefix(cut)), domains: nil))
        }
        items.append(Item(name: "base64-der", tlsCert: cert, tlsKey: pkcs8Body, domains: nil))
        items.append(Item(name: "base64-der-cut", tlsCert: cert, tlsKey: String(pkcs8Body.prefix(60)), domains: nil))
        items.append(Item(name: "hex-der", tlsCert: cert, tlsKey: hex, domains: nil))
        items.append(Item(name: "hex-der-cut", tlsCert: cert, tlsKey: String(hex.prefix(48)), domains: nil))
        // The key pasted where a name belongs.
        items.append(Item(name: "key-in-domains", tlsCert: cert, tlsKey: pkcs8, domains: pkcs8Body))
        // A certificate file whose key block (combined file) is damaged.
        items.append(Item(name: "combined-torn", tlsCert: file("combined.pem", leaf.pem + String(pkcs8.prefix(120))), tlsKey: nil, domains: nil))
        self.items = items
        self.files = files

        var windows = Set<Substring>()
        for secret in [pkcs8Body, sec1Body, base64OfPEM, hex, hex.uppercased()] {
            let characters = Array(secret)
            guard characters.count >= 16 else { continue }
            for start in 0...(characters.count - 16) {
                windows.insert(Substring(String(characters[start..<start + 16])))
            }
        }
        secretWindows = windows
    }

    /// The first 16-character piece of the key found in `text`, if any.
    func leakedPiece(in text: String) -> Substring? {
        let characters = Array(text)
        guard characters.count >= 16 else { return nil }
        for start in 0...(characters.count - 16) {
            let window = Substring(String(characters[start..<start + 16]))
            if secretWindows.contains(window) { return window }
        }
        return nil
    }

    /// The `certificates:` section (indented under the key) holding every item.
    var certificatesYAML: String {
        var yaml = ""
        for item in items {
            yaml += "  \(item.name):\n"
            yaml += "    tls_cert: \(Self.yamlValue(item.tlsCert))\n"
            if let key = item.tlsKey { yaml += "    tls_key: \(Self.yamlValue(key))\n" }
            if let domains = item.domains { yaml += "    domains: \(Self.yamlValue(domains))\n" }
        }
        return yaml
    }

    func write(into folder: FixtureFolder) throws {
        try FileManager.default.createDirectory(at: folder.url.appendingPathComponent("corpus"), withIntermediateDirectories: true)
        for (path, content) in files { try folder.write(content, to: path) }
    }

    /// Inline PEM as a literal block; anything else as a double-quoted scalar.
    static func yamlValue(_ value: String) -> String {
        if value.contains("\n") {
            return "|\n" + value.split(separator: "\n", omittingEmptySubsequences: false).map { "      " + $0 }.joined(separator: "\n")
        }
        return "\"\(value)\""
    }

    static func body(of pem: String) -> String {
        pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
    }

    static func wrap(_ base64: String) -> String {
        var out = ""
        var rest = Substring(base64)
        while !rest.isEmpty {
            out += rest.prefix(64) + "\n"
            rest = rest.dropFirst(64)
        }
        return out
    }
}
