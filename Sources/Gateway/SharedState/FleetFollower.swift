import Foundation
import PostgresNIO
import Synchronization

/// Makes a node follow its fleet: a connection of its own `LISTEN`s for commits (each
/// announces its generation) and asks for a catch-up on every one; a periodic check asks
/// too (a notification lost, a reconnection). The same connection listens for challenge
/// answers (``FleetChallenges``), mirrored on each notification and every 5 s, when the
/// node also says it is alive. Lost connections are reopened with backoff (100 ms doubling
/// to 5 s). Catch-ups are coalesced: however many commits are announced while one runs,
/// one more runs after it.
final class FleetFollower: Sendable {
    private let member: FleetMember
    private let pollInterval: Duration
    private let trigger: CatchUpTrigger
    private let challenges: FleetChallenges?
    private let challengeTrigger: CatchUpTrigger?
    private let tasks = Mutex<[Task<Void, Never>]>([])

    /// - Parameter catchUp: brings the served set to the fleet's latest generation.
    init(member: FleetMember, pollInterval: Duration, challenges: FleetChallenges? = nil, catchUp: @escaping @Sendable () async -> Void) {
        self.member = member
        self.pollInterval = pollInterval
        self.trigger = CatchUpTrigger(work: catchUp)
        self.challenges = challenges
        self.challengeTrigger = challenges.map { challenges in
            CatchUpTrigger { await runBlocking(on: challenges.queue) { challenges.mirror() } }
        }
    }

    func start() {
        let member = self.member
        let trigger = self.trigger
        let pollInterval = self.pollInterval
        let challengeTrigger = self.challengeTrigger
        let listening = Task { await Self.listen(member: member, trigger: trigger, challengeTrigger: challengeTrigger) }
        let polling = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: pollInterval)
                if Task.isCancelled { break }
                trigger.fire()
            }
        }
        var started = [listening, polling]
        if let challenges, let challengeTrigger {
            started.append(Task {
                while !Task.isCancelled {
                    await runBlocking(on: challenges.queue) { challenges.heartbeat() }
                    challengeTrigger.fire()
                    try? await Task.sleep(for: .seconds(5))
                }
            })
        }
        tasks.withLock { $0 = started }
    }

    func stop() async {
        let running = tasks.withLock { tasks in defer { tasks = [] }; return tasks }
        for task in running { task.cancel() }
        for task in running { await task.value }
        await trigger.idle()
        await challengeTrigger?.idle()
        if let challenges { await runBlocking(on: challenges.queue) { challenges.close() } }
    }

    private static func listen(member: FleetMember, trigger: CatchUpTrigger, challengeTrigger: CatchUpTrigger?) async {
        var backoff = ReconnectBackoff()
        while !Task.isCancelled {
            do {
                let connection = try await member.database.connect()
                do {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            try await connection.listen(on: FleetDatabase.channel) { notifications in
                                // Whatever was committed while this node was not listening.
                                trigger.fire()
                                for try await notification in notifications {
                                    if let generation = UInt64(notification.payload) { member.announced(generation: generation) }
                                    trigger.fire()
                                }
                            }
                        }
                        if let challengeTrigger {
                            group.addTask {
                                try await connection.listen(on: FleetChallenges.channel) { notifications in
                                    challengeTrigger.fire()
                                    for try await _ in notifications { challengeTrigger.fire() }
                                }
                            }
                        }
                        backoff.connected()
                        // The first to end (the connection went away) ends both.
                        try await group.next()
                        group.cancelAll()
                    }
                } catch {
                    if !Task.isCancelled { member.unreachable(SharedStateError.from(error, operation: "listen for the fleet's commits")) }
                }
                try? await connection.close()
                if Task.isCancelled { break }
            } catch {
                member.unreachable(error)
            }
            try? await Task.sleep(for: backoff.failed())
        }
    }
}

/// Runs `work` when fired — at most one run at a time, and one more after it when fired
/// meanwhile, however many times.
final class CatchUpTrigger: Sendable {
    private let work: @Sendable () async -> Void
    private let state = Mutex<(running: Task<Void, Never>?, again: Bool)>((nil, false))

    init(work: @escaping @Sendable () async -> Void) {
        self.work = work
    }

    func fire() {
        state.withLock { state in
            if state.running != nil {
                state.again = true
                return
            }
            state.running = Task { [self] in
                while true {
                    await work()
                    let more = self.state.withLock { state -> Bool in
                        if state.again {
                            state.again = false
                            return true
                        }
                        state.running = nil
                        return false
                    }
                    if !more { return }
                }
            }
        }
    }

    /// Waits for a run in progress to end.
    func idle() async {
        let running = state.withLock { state in
            state.again = false
            return state.running
        }
        await running?.value
    }
}
