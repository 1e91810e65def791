import CertificateKit
import Foundation
import Yams

/// The parsed `config/certgate.yaml`. Keys this version does not know are ignored.
public struct GatewayConfiguration: Sendable {
    /// The `certificates:` entries by name.
    public var certificates: [String: CertificateConf]
    /// Folder for state (relative to the config file's folder); `state` by default.
    public var stateDirectory: String
    /// The config file's folder: where relative paths start.
    public var baseDirectory: String

    public init(certificates: [String: CertificateConf] = [:], stateDirectory: String = "state", baseDirectory: String) {
        self.certificates = certificates
        self.stateDirectory = stateDirectory
        self.baseDirectory = baseDirectory
    }

    /// Reads and decodes a configuration file.
    public static func load(path: String) throws(ConfigurationError) -> GatewayConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(file: path, key: "", reason: "cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(file: path, key: "", reason: "not UTF-8 text")
        }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(yaml: text, file: path, baseDirectory: folder)
    }

    /// Decodes configuration text; `file` names it in errors.
    public static func parse(yaml: String, file: String, baseDirectory: String) throws(ConfigurationError) -> GatewayConfiguration {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: yaml) else {
                return GatewayConfiguration(baseDirectory: baseDirectory)
            }
            root = node
        } catch let error as YamlError {
            throw YAMLErrorLocation.configurationError(error, file: file)
        } catch {
            throw ConfigurationError(file: file, key: "", reason: "\(error)")
        }
        guard root.mapping != nil else {
            throw ConfigurationError(file: file, key: "", line: root.mark?.line, column: root.mark?.column,
                                     reason: "the top level must be a mapping of keys (listeners, routes, certificates, ...)")
        }
        do {
            let document = try YAMLDecoder().decode(Document.self, from: root)
            return GatewayConfiguration(
                certificates: document.certificates ?? [:],
                stateDirectory: document.stateDirectory ?? "state",
                baseDirectory: baseDirectory)
        } catch let error as DecodingError {
            throw YAMLErrorLocation.configurationError(error, root: root, file: file)
        } catch {
            throw ConfigurationError(file: file, key: "", reason: "\(error)")
        }
    }

    /// The build context for this file's certificates.
    public func buildContext(now: Date = Date(), servingMaterialFactory: ServingMaterialFactory? = nil) -> CertificateBuildContext {
        CertificateBuildContext(baseDirectory: baseDirectory, now: now, servingMaterialFactory: servingMaterialFactory)
    }

    private struct Document: Decodable {
        var certificates: [String: CertificateConf]?
        var stateDirectory: String?

        enum CodingKeys: String, CodingKey {
            case certificates
            case stateDirectory = "state_dir"
        }
    }
}
