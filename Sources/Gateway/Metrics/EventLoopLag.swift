import Metrics
import NIOCore
import Synchronization

/// How late each event loop runs work: a task scheduled on every loop each `interval`
/// records how much later than asked it ran, as `certgate_event_loop_lag_seconds` (a
/// histogram). Handshakes, routing and the certificate callback all run on these loops, so
/// anything that blocks one — a stall — delays every connection on it by as much, and shows
/// here as lag.
final class EventLoopLag: Sendable {
    static let label = "certgate_event_loop_lag_seconds"
    /// The histogram's buckets: a loop that keeps up lags well under a millisecond.
    static let buckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
    ]

    private let tasks = Mutex<[RepeatedTask]>([])
    private let record: @Sendable (_ nanoseconds: Int64) -> Void

    /// - Parameter record: where each lag goes (default: the histogram).
    init(record: (@Sendable (_ nanoseconds: Int64) -> Void)? = nil) {
        if let record {
            self.record = record
        } else {
            let timer = Metrics.Timer(label: Self.label)
            self.record = { timer.recordNanoseconds($0) }
        }
    }

    /// Starts measuring every loop of `group`.
    func start(on group: any EventLoopGroup, every interval: TimeAmount = .milliseconds(100)) {
        let record = self.record
        var started: [RepeatedTask] = []
        for loop in group.makeIterator() {
            // When the loop was last due: a repeated task runs `interval` after the end of its
            // previous run, so lateness is measured from there.
            let lastRun = LastRun(NIODeadline.now())
            started.append(loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                let now = NIODeadline.now()
                let due = lastRun.deadline + interval
                lastRun.deadline = now
                record(max(0, (now - due).nanoseconds))
            })
        }
        tasks.withLock { $0 += started }
    }

    func stop() {
        for task in tasks.withLock({ tasks in defer { tasks = [] }; return tasks }) { task.cancel() }
    }
}

/// The end of a loop's last measuring run; touched only by that loop's repeated task.
private final class LastRun: Sendable {
    private let uptime: Synchronization.Atomic<UInt64>

    init(_ deadline: NIODeadline) {
        uptime = Atomic(deadline.uptimeNanoseconds)
    }

    var deadline: NIODeadline {
        get { NIODeadline.uptimeNanoseconds(uptime.load(ordering: .relaxed)) }
        set { uptime.store(newValue.uptimeNanoseconds, ordering: .relaxed) }
    }
}
