import Logging
import Synchronization

/// The log level of the process, which a reload may change: every logger made by a
/// ``SwitchableLogHandler`` reads it on each message (one relaxed atomic load).
public final class LogLevelSwitch: Sendable {
    private let raw: Atomic<Int>

    public init(_ level: Logger.Level) {
        raw = Atomic(Self.index(of: level))
    }

    public var level: Logger.Level {
        get { Logger.Level.allCases[raw.load(ordering: .relaxed)] }
        set { raw.store(Self.index(of: newValue), ordering: .relaxed) }
    }

    private static func index(of level: Logger.Level) -> Int {
        Logger.Level.allCases.firstIndex(of: level) ?? 0
    }
}

/// A log handler whose level is the shared ``LogLevelSwitch``'s; the messages go to
/// `output` (standard error in `certgate run`).
public struct SwitchableLogHandler: LogHandler {
    private var output: any LogHandler
    private let levels: LogLevelSwitch
    /// A level set on this one logger (`logger.logLevel = …`) wins over the shared one.
    private var override: Logger.Level?

    public init(output: any LogHandler, levels: LogLevelSwitch) {
        self.output = output
        self.levels = levels
    }

    public var logLevel: Logger.Level {
        get { override ?? levels.level }
        set { override = newValue }
    }

    public var metadata: Logger.Metadata {
        get { output.metadata }
        set { output.metadata = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { output[metadataKey: key] }
        set { output[metadataKey: key] = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { output.metadataProvider }
        set { output.metadataProvider = newValue }
    }

    public func log(event: LogEvent) {
        output.log(event: event)
    }
}
