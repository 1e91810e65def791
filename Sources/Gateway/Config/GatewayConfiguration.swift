import CertificateKit
import CertificateKitNIO
import Foundation
import Logging
import Yams

/// The parsed `config/certgate.yaml`. A key this version does not know is an error.
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
    /// ACME CAs by name (`acme:`), besides the built-in ones.
    public var acme: [String: ACMEIssuerConfiguration]
    /// The fleet's PostgreSQL (`shared_state:`), if any.
    public var sharedState: SharedStateConfiguration?
    /// The bounds of on-demand ACME (`on_demand:`).
    public var onDemand: OnDemandConfiguration
    /// The config file's folder: where relative paths start.
    public var baseDirectory: String

    public static let defaultShutdownTimeout = ConfigDuration(.seconds(30), text: "30s")

    public init(
        listeners: [ListenerConfiguration] = [], routes: [RouteConfiguration] = [],
        certificates: [String: CertificateConf] = [:], stateDirectory: String = "state",
        logLevel: Logger.Level = .info, shutdownTimeout: ConfigDuration = GatewayConfiguration.defaultShutdownTimeout,
        issuing: IssuingConfiguration = IssuingConfiguration(), metrics: MetricsConfiguration? = nil,
        validity: ValidityConfiguration = ValidityConfiguration(), control: ControlConfiguration? = nil,
        acme: [String: ACMEIssuerConfiguration] = [:], sharedState: SharedStateConfiguration? = nil,
        onDemand: OnDemandConfiguration = OnDemandConfiguration(), baseDirectory: String
    ) {
        self.acme = acme
        self.onDemand = onDemand
        self.sharedState = sharedState
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

    /// The ACME CA an entry's `acme:` names: the file's, else a built-in one.
    public func acmeIssuer(named name: String) -> ACMEIssuerConfiguration? {
        acme[name] ?? ACMEIssuerConfiguration.builtIn[name]
    }

    /// The state folder as an absolute (or working-folder-relative) path.
    public var resolvedStateDirectory: String {
        MaterialSource.resolve(path: stateDirectory, baseDirectory: baseDirectory)
    }

    /// Reads and decodes a configuration file.
    /// - Parameter acmeIssuersElsewhere: the file holds entries for a running gateway
    ///   (`ctl apply`/`upsert`): the CAs their `acme` fields name are the gateway's, which
    ///   checks them; this file's own `acme:` section is not where they must be.
    public static func load(path: String, acmeIssuersElsewhere: Bool = false) throws(ConfigurationErrors) -> GatewayConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationErrors(ConfigurationError(file: path, key: "", reason: "cannot read the file"))
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationErrors(ConfigurationError(file: path, key: "", reason: "not UTF-8 text"))
        }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(yaml: text, file: path, baseDirectory: folder, acmeIssuersElsewhere: acmeIssuersElsewhere)
    }

    /// `control.socket` of the file at `path` (resolved against its folder), read even when
    /// the rest of the file is invalid — so `ctl reload` can reach the gateway and let it say
    /// why the file is refused. Nil when the file is unreadable YAML or names no socket.
    public static func controlSocket(inFileAt path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8),
              let root = try? Yams.compose(yaml: text), let socket = root["control"]?["socket"]?.string, !socket.isEmpty else {
            return nil
        }
        return MaterialSource.resolve(path: socket, baseDirectory: URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }

    /// Decodes and checks configuration text; `file` names it in errors.
    ///
    /// Time is linear in the text's size: the `certificates:` mapping is walked once, pair
    /// by pair (Yams' keyed lookup is a linear search per key, which made 10,000 entries
    /// take seconds). Unknown keys anywhere are errors with the closest known key.
    public static func parse(yaml: String, file: String, baseDirectory: String, acmeIssuersElsewhere: Bool = false) throws(ConfigurationErrors) -> GatewayConfiguration {
        if let section = CertificatesSection(splitting: yaml),
           let configuration = parseInPieces(section, baseDirectory: baseDirectory, acmeIssuersElsewhere: acmeIssuersElsewhere) {
            return configuration
        }
        return try parseWhole(yaml: yaml, file: file, baseDirectory: baseDirectory, acmeIssuersElsewhere: acmeIssuersElsewhere)
    }

    /// A valid file whose `certificates:` section was cut into pieces (see
    /// ``CertificatesSection``): the pieces parsed and decoded on every core. Nil when any
    /// part is not valid or the cut does not stand — the file is then parsed whole, which
    /// says what is wrong exactly as it always has.
    static func parseInPieces(_ section: CertificatesSection, baseDirectory: String, acmeIssuersElsewhere: Bool) -> GatewayConfiguration? {
        guard let root = try? YAMLResolution.compose(section.remainder), let top = root.mapping, YAMLResolution.isBlock(top),
              let header = top.first(where: { $0.key.string == "certificates" }), header.key.mark?.line == section.headerLine,
              header.value.scalar?.string == "", header.value.scalar?.style == .plain,
              schema.unknownKeys(in: root, file: "").isEmpty,
              let document = try? YAMLDecoder().decode(Document.self, from: YAMLResolution.resolved(root, skipping: ["certificates"]))
        else { return nil }
        let entrySchema = ConfigurationSchema.section(names: CertificateConf.fieldNames)
        let decoded = ConcurrentMap.map(section.pieces, chunk: 1) { piece -> [(String, CertificateConf)]? in
            // The piece's nodes live only here.
            guard let node = try? YAMLResolution.compose(piece.text), let mapping = node.mapping, YAMLResolution.isBlock(mapping),
                  mapping.count == piece.keyLines.count else { return nil }
            var entries: [(String, CertificateConf)] = []
            entries.reserveCapacity(mapping.count)
            for ((key, value), line) in zip(mapping, piece.keyLines) {
                guard key.mark?.line == line, key.scalar != nil, let name = key.string, !name.isEmpty,
                      entrySchema.unknownKeys(in: value, file: "").isEmpty,
                      let conf = try? CertificateConfDecoder.decode(value, name: name, file: "") else { return nil }
                entries.append((name, conf))
            }
            return entries
        }
        var certificates: [String: CertificateConf] = [:]
        certificates.reserveCapacity(section.pieces.reduce(0) { $0 + $1.keyLines.count })
        for piece in decoded {
            guard let piece else { return nil }
            for (name, conf) in piece {
                // A name twice: the whole parse says so.
                guard certificates.updateValue(conf, forKey: name) == nil else { return nil }
            }
        }
        let configuration = assemble(document, certificates: certificates, baseDirectory: baseDirectory)
        guard ConfigurationRules.problems(in: configuration, acmeIssuersElsewhere: acmeIssuersElsewhere).isEmpty else { return nil }
        return configuration
    }

    /// The file composed as one document.
    static func parseWhole(yaml: String, file: String, baseDirectory: String, acmeIssuersElsewhere: Bool) throws(ConfigurationErrors) -> GatewayConfiguration {
        let root: Node
        do {
            guard let node = try YAMLResolution.compose(yaml) else {
                return GatewayConfiguration(baseDirectory: baseDirectory)
            }
            root = node
        } catch let error as YamlError {
            throw ConfigurationErrors(YAMLErrorLocation.configurationError(error, file: file))
        } catch {
            throw ConfigurationErrors(ConfigurationError(file: file, key: "", reason: "invalid YAML"))
        }
        guard root.mapping != nil else {
            throw ConfigurationErrors(ConfigurationError(
                file: file, key: "", line: root.mark?.line, column: root.mark?.column,
                reason: "the top level must be a mapping of keys (listeners, routes, certificates, ...)"))
        }
        let unknown = schema.unknownKeys(in: root, file: file)
        let document: Document
        let certificates: [String: CertificateConf]
        do {
            document = try YAMLDecoder().decode(Document.self, from: YAMLResolution.resolved(root, skipping: ["certificates"]))
            certificates = try decodeCertificates(
                root.mapping?.first(where: { $0.key.string == "certificates" })?.value, root: root, file: file)
        } catch let error as DecodingError {
            throw ConfigurationErrors(unknown + [YAMLErrorLocation.configurationError(error, root: root, file: file)])
        } catch let error as ConfigurationError {
            throw ConfigurationErrors(unknown + [error])
        } catch {
            throw ConfigurationErrors(unknown + [ConfigurationError(file: file, key: "", reason: "the configuration cannot be decoded")])
        }
        let configuration = assemble(document, certificates: certificates, baseDirectory: baseDirectory)
        let problems = unknown + ConfigurationRules.problems(in: configuration, acmeIssuersElsewhere: acmeIssuersElsewhere).map { problem in
            let mark = YAMLErrorLocation.locate(problem.path, in: root)?.mark
            return ConfigurationError(
                file: file, key: problem.path.joined(separator: "."), line: mark?.line, column: mark?.column,
                reason: problem.reason)
        }
        guard problems.isEmpty else { throw ConfigurationErrors(problems) }
        // The document's nodes (several per entry) are freed on another core.
        BackgroundRelease.release(root)
        return configuration
    }

    private static func assemble(_ document: Document, certificates: [String: CertificateConf], baseDirectory: String) -> GatewayConfiguration {
        GatewayConfiguration(
            listeners: document.listeners ?? [],
            routes: document.routes ?? [],
            certificates: certificates,
            stateDirectory: document.stateDirectory ?? "state",
            logLevel: document.logLevel?.level ?? .info,
            shutdownTimeout: document.shutdownTimeout ?? defaultShutdownTimeout,
            issuing: document.issuing ?? IssuingConfiguration(),
            metrics: document.metrics,
            validity: document.validity ?? ValidityConfiguration(),
            control: document.control,
            acme: document.acme ?? [:],
            sharedState: document.sharedState,
            onDemand: document.onDemand ?? OnDemandConfiguration(),
            baseDirectory: baseDirectory)
    }

    /// What `certgate run` needs beyond a file that decodes — at least one listener, a
    /// control socket path a Unix socket can bind — so that `certgate check` refuses
    /// exactly what `run` refuses. (A file read only for its `certificates:`, as by
    /// `ctl apply`, needs none of this.)
    public func problemsForServing(file: String) -> [ConfigurationError] {
        var problems: [ConfigurationError] = []
        if listeners.isEmpty {
            problems.append(ConfigurationError(
                file: file, key: "listeners",
                reason: "no listeners: certgate run has nothing to serve (add one, e.g. '- listen: 127.0.0.1:8443')"))
        }
        if let problem = Self.notAFolder(resolvedStateDirectory) {
            problems.append(ConfigurationError(file: file, key: "state_dir", reason: problem))
        }
        if let control {
            let path = MaterialSource.resolve(path: control.socket, baseDirectory: baseDirectory)
            let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
            if let problem = Self.notAFolder(folder) {
                problems.append(ConfigurationError(file: file, key: "control.socket", reason: "its folder: " + problem))
            }
            if path.utf8.count > Self.longestSocketPath {
                problems.append(ConfigurationError(
                    file: file, key: "control.socket",
                    reason: "the socket path is \(path.utf8.count) bytes once resolved; a Unix socket path is at most \(Self.longestSocketPath)"))
            }
        }
        return problems
    }

    /// Why `path` cannot be a folder certgate makes or uses: something else is there, or a
    /// part of the way is not a folder. A path that does not exist yet is fine (run makes it).
    static func notAFolder(_ path: String) -> String? {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            return isDirectory.boolValue ? nil : "\(QuotedValue.shown(path, limit: 255)) exists and is not a folder"
        }
        // The nearest part of the way that exists must be a folder. Walked on the absolute
        // path's components, so it always ends (at "/" at the latest).
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var components = absolute.split(separator: "/", omittingEmptySubsequences: true).dropLast()
        while !components.isEmpty {
            let ancestor = "/" + components.joined(separator: "/")
            if FileManager.default.fileExists(atPath: ancestor, isDirectory: &isDirectory) {
                return isDirectory.boolValue ? nil : "\(QuotedValue.shown(ancestor, limit: 255)) is not a folder"
            }
            components = components.dropLast()
        }
        return nil
    }

    /// `sun_path` holds 108 bytes on Linux, the terminating NUL included.
    static let longestSocketPath = 107

    /// The file's top-level keys (the sections a reload plans for, see ``ReloadPlan``).
    static var topLevelKeys: [String] { Document.CodingKeys.allCases.map(\.rawValue) }

    /// The keys the file may hold, from each section's coding keys.
    static let schema: ConfigurationSchema = .section(Document.CodingKeys.self, nested: [
        "listeners": .list(.section(ListenerConfiguration.CodingKeys.self)),
        "routes": .list(.section(RouteConfiguration.CodingKeys.self, nested: [
            "respond": .section(RouteConfiguration.Response.CodingKeys.self, nested: ["headers": .named(.value)]),
        ])),
        "certificates": .named(.section(names: CertificateConf.fieldNames)),
        "issuing": .section(IssuingConfiguration.CodingKeys.self),
        "metrics": .section(MetricsConfiguration.CodingKeys.self),
        "validity": .section(ValidityConfiguration.CodingKeys.self, nested: [
            "notify": .list(.section(NotifierConfiguration.CodingKeys.self)),
        ]),
        "control": .section(ControlConfiguration.CodingKeys.self),
        "shared_state": .section(SharedStateConfiguration.CodingKeys.self),
        "on_demand": .section(OnDemandConfiguration.CodingKeys.self),
        "acme": .named(.section(ACMEIssuerConfiguration.CodingKeys.self, nested: [
            "eab": .section(ACMEIssuerConfiguration.ExternalAccount.CodingKeys.self),
        ])),
    ])

    /// `certificates:` decoded entry by entry in one pass over its pairs.
    private static func decodeCertificates(_ node: Node?, root: Node, file: String) throws(ConfigurationError) -> [String: CertificateConf] {
        guard let node, node.null == nil else { return [:] }
        guard let mapping = node.mapping else {
            throw ConfigurationError(
                file: file, key: "certificates", line: node.mark?.line, column: node.mark?.column,
                reason: "expected a mapping of entry names to entries")
        }
        var certificates: [String: CertificateConf] = [:]
        certificates.reserveCapacity(mapping.count)
        for (key, value) in mapping {
            guard let name = key.string, !name.isEmpty else {
                throw ConfigurationError(
                    file: file, key: "certificates", line: key.mark?.line, column: key.mark?.column,
                    reason: "an entry name must be a non-empty string")
            }
            certificates[name] = try CertificateConfDecoder.decode(value, name: name, file: file)
        }
        return certificates
    }

    /// The build context for this file's certificates.
    public func buildContext(now: Date = Date(), servingMaterialFactory: ServingMaterialFactory? = nil) -> CertificateBuildContext {
        CertificateBuildContext(baseDirectory: baseDirectory, now: now, servingMaterialFactory: servingMaterialFactory)
    }

    /// The build context of a set that is served: each entry's TLS objects made by NIOSSL,
    /// which proves every key pair as it loads the key (see
    /// ``CertificateKit/CertificateBuildContext/factoryChecksKeyPairs``).
    public func servingBuildContext(now: Date = Date()) -> CertificateBuildContext {
        CertificateBuildContext(
            baseDirectory: baseDirectory, now: now, servingMaterialFactory: NIOServingMaterial.factory, factoryChecksKeyPairs: true)
    }

    private struct Document: Decodable {
        var listeners: [ListenerConfiguration]?
        var routes: [RouteConfiguration]?
        var stateDirectory: String?
        var logLevel: ConfigLogLevel?
        var shutdownTimeout: ConfigDuration?
        var issuing: IssuingConfiguration?
        var metrics: MetricsConfiguration?
        var validity: ValidityConfiguration?
        var control: ControlConfiguration?
        var acme: [String: ACMEIssuerConfiguration]?
        var sharedState: SharedStateConfiguration?
        var onDemand: OnDemandConfiguration?

        /// Every top-level key; `certificates` is decoded apart (see `decodeCertificates`).
        enum CodingKeys: String, CodingKey, CaseIterable {
            case listeners, routes, certificates, issuing, metrics, validity, control, acme
            case sharedState = "shared_state"
            case onDemand = "on_demand"
            case stateDirectory = "state_dir"
            case logLevel = "log_level"
            case shutdownTimeout = "shutdown_timeout"
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            listeners = try container.decodeIfPresent([ListenerConfiguration].self, forKey: .listeners)
            routes = try container.decodeIfPresent([RouteConfiguration].self, forKey: .routes)
            stateDirectory = try container.decodeIfPresent(String.self, forKey: .stateDirectory)
            logLevel = try container.decodeIfPresent(ConfigLogLevel.self, forKey: .logLevel)
            shutdownTimeout = try container.decodeIfPresent(ConfigDuration.self, forKey: .shutdownTimeout)
            issuing = try container.decodeIfPresent(IssuingConfiguration.self, forKey: .issuing)
            metrics = try container.decodeIfPresent(MetricsConfiguration.self, forKey: .metrics)
            validity = try container.decodeIfPresent(ValidityConfiguration.self, forKey: .validity)
            control = try container.decodeIfPresent(ControlConfiguration.self, forKey: .control)
            acme = try container.decodeIfPresent([String: ACMEIssuerConfiguration].self, forKey: .acme)
            sharedState = try container.decodeIfPresent(SharedStateConfiguration.self, forKey: .sharedState)
            onDemand = try container.decodeIfPresent(OnDemandConfiguration.self, forKey: .onDemand)
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
                in: container, debugDescription: "\(QuotedValue.quote(raw)) is not a log level (trace, debug, info, notice, warning, error, critical)")
        }
        self.level = level
    }
}
