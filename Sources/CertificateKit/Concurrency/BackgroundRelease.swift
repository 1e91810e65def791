import Dispatch

/// Lets go of a large value on another thread.
///
/// Tearing down 100,000 entries, or the YAML nodes of 100,000 entries, takes a few tenths of
/// a second of freeing; on the path of a start or a reload that is time spent on one core
/// while the other has nothing to do. The value is handed to a background queue and freed
/// there once the caller's own references are gone.
///
/// Only for values no thread mutates any more (parsed documents, built sets): the value is
/// not copied or locked, only kept alive until the background queue drops it.
public enum BackgroundRelease {
    public static func release<Value>(_ value: Value) {
        let box = Box(value: value)
        DispatchQueue.global(qos: .utility).async { withExtendedLifetime(box) {} }
    }

    private struct Box<Wrapped>: @unchecked Sendable {
        let value: Wrapped
    }
}
