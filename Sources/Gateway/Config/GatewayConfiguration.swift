import CertificateKit
import Foundation
import Logging
import Yams

/// The parsed `config/certgate.yaml`. Keys this version does not know are ignored.
public struct GatewayConfiguration: Sendable {
    public var listeners: [ListenerConfiguration]
    public var routes: [RouteConfiguration]
    /// The `certificates:` entries by name.
    public var certificates: [String: CertificateConf]
    /// Folder for state, relative to the config file's folder; `state` by default.
    public var stateDirectory: String
    public var logLevel: Logger.Level
    /// How long a shutdown waits for open connections before closing them.
    public var shutdownTimeout: ConfigDuration
    /// Limits of on-the-fly signing by issuer entries (`issuing:`).
    public var issuing: IssuingConfiguration
    /// The Prometheus endpoint (`metrics:`), if any.
    public var metrics: MetricsConfiguration?
    /// The validity monitor (`validity:`).
    public var validity: ValidityConfiguration
    /// The gRPC control socket (`control:`), if any.
    public var control: ControlConfiguration?
    /// The config file's folder: where relative paths start.
    public var baseDirectory: String

    public static let defaultShutdownTimeout = ConfigDuration(.seconds(30), text: "30s")

    public init(
        listeners: [ListenerConfiguration] = [], routes: [RouteConfiguration] = [],
        certificates: [String: CertificateConf] = [:], stateDirectory: String = "state",
        logLevel: Logger.Level = .info, shutdownTimeout: ConfigDuration = GatewayConfiguration.defaultShutdownTimeout,
        issuing: IssuingConfiguration = IssuingConfiguration(), metrics: MetricsConfiguration? = nil,
        validity: ValidityConfiguration = ValidityConfiguration(), control: ControlConfiguration? = nil,
        baseDirectory: String
    ) {
        self.listeners = listeners
        self.routes = routes
        self.certificates = certificates
        self.stateDirectory = stateDirectory
        self.logLevel = logLevel
        self.shutdownTimeout = shutdownTimeout
        self.issuing = issuing
        self.metrics = metrics
        self.validity = validity
        self.control = control
        self.baseDirectory = baseDirectory
    }

    /// The state folder as an absolute (or working-folder-relative) path.
    public var resolvedStateDirectory: String {
        MaterialSource.resolve(path: stateDirectory, baseDirectory: baseDirectory)
    }

    /// Reads and decodes a configuration file.
    public static func load(path: String) throws(ConfigurationErrors) -> GatewayConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationErrors(ConfigurationError(file: path, key: "", reason: "cannot read the file"))
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationErrors(ConfigurationError(file: path, key: "", reason: "not UTF-8 text"))
        }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(yaml: text, file: path, baseDirectory: folder)
    }

    /// Decodes and checks configuration text; `file` names it in errors.
    public static func parse(yaml: String, file: String, baseDirectory: String) throws(ConfigurationErrors) -> GatewayConfiguration {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: yaml) else {
                return GatewayConfiguration(baseDirectory: baseDirectory)
            }
            root = node
        } catch let error as YamlError {
            throw ConfigurationErrors(YAMLErrorLocation.configurationError(error, file: file))
        } catch {
            throw ConfigurationErrors(ConfigurationError(file: file, key: "", reason: "\(error)"))
        }
        guard root.mapping != nil else {
            throw ConfigurationErrors(ConfigurationError(
                file: file, key: "", line: root.mark?.line, column: root.mark?.column,
                reason: "the top level must be a mapping of keys (listeners, routes, certificates, ...)"))
        }
        let document: Document
        do {
            document = try YAMLDecoder().decode(Document.self, from: root)
        } catch let error as DecodingError {
            throw ConfigurationErrors(YAMLErrorLocation.configurationError(error, root: root, file: file))
        } catch {
            throw ConfigurationErrors(ConfigurationError(file: file, key: "", reason: "\(error)"))
        }
        let configuration = GatewayConfiguration(
            listeners: document.listeners ?? [],
            routes: document.routes ?? [],
            certificates: document.certificates ?? [:],
            stateDirectory: document.stateDirectory ?? "state",
            logLevel: document.logLevel?.level ?? .info,
            shutdownTimeout: document.shutdownTimeout ?? defaultShutdownTimeout,
            issuing: document.issuing ?? IssuingConfiguration(),
            metrics: document.metrics,
            validity: document.validity ?? ValidityConfiguration(),
            control: document.control,
            baseDirectory: baseDirectory)
        let problems = ConfigurationRules.problems(in: configuration)
        guard problems.isEmpty else {
            throw ConfigurationErrors(problems.map { problem in
                let mark = YAMLErrorLocation.locate(problem.path, in: root)?.mark
                return ConfigurationError(
                    file: file, key: problem.path.joined(separator: "."), line: mark?.line, column: mark?.column,
                    reason: problem.reason)
            })
        }
        return configuration
    }

    /// The build context for this file's certificates.
    public func buildContext(now: Date = Date(), servingMaterialFactory: ServingMaterialFactory? = nil) -> CertificateBuildContext {
        CertificateBuildContext(baseDirectory: baseDirectory, now: now, servingMaterialFactory: servingMaterialFactory)
    }

    private struct Document: Decodable {
        var listeners: [ListenerConfiguration]?
        var routes: [RouteConfiguration]?
        var certificates: [String: CertificateConf]?
        var stateDirectory: String?
        var logLevel: ConfigLogLevel?
        var shutdownTimeout: ConfigDuration?
        var issuing: IssuingConfiguration?
        var metrics: MetricsConfiguration?
        var validity: ValidityConfiguration?
        var control: ControlConfiguration?

        enum CodingKeys: String, CodingKey {
            case listeners, routes, certificates, issuing, metrics, validity, control
            case stateDirectory = "state_dir"
            case logLevel = "log_level"
            case shutdownTimeout = "shutdown_timeout"
        }
    }
}

/// `log_level`: trace, debug, info, notice, warning, error or critical (any case).
struct ConfigLogLevel: Decodable {
    let level: Logger.Level

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let raw = try container.decode(String.self)
        guard let level = Logger.Level(rawValue: raw.lowercased()) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "'\(raw)' is not a log level (trace, debug, info, notice, warning, error, critical)")
        }
        self.level = level
    }
}
