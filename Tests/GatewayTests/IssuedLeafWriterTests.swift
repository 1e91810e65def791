import CertificateKit
import Foundation
import GRDB
import Logging
import Synchronization
import Testing
@testable import Gateway

/// The local CA's issued leaves reach the state behind the signing threads, in batches.
@Suite("Issued leaves written to the state", .timeLimit(.minutes(1)))
struct IssuedLeafWriterTests {
    /// Counts the commits that wrote `issued_leaves`.
    final class CommitCounter: TransactionObserver, @unchecked Sendable {
        let commits = Mutex(0)
        func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool { eventKind.tableName == "issued_leaves" }
        func databaseDidChange(with event: DatabaseEvent) {}
        func databaseDidCommit(_ db: Database) { commits.withLock { $0 += 1 } }
        func databaseDidRollback(_ db: Database) {}
    }

    @Test("1,000 leaves saved while the database is busy are written in at most two transactions (the batch the writer had taken when it found the database busy, then all the others), not one each; all are stored")
    func oneTransactionPerBatch() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-writer-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let state = try StateStore(directory: folder.path)
        let counter = CommitCounter()
        state.database.add(transactionObserver: counter, extent: .databaseLifetime)
        let writer = IssuedLeafWriter(state: state, logger: Logger(label: "test"))
        // Another writer holds the database until every leaf has been handed over.
        let release = DispatchSemaphore(value: 0)
        let holding = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            state.database.writeWithoutTransaction { _ in
                holding.signal()
                release.wait()
            }
        }
        holding.wait()
        for index in 0..<1_000 {
            writer.saved(IssuedLeafRecord(
                key: IssuedLeafKey(authority: [1, 2, 3], name: "leaf-\(index).dev.test"),
                certificatePEM: "certificate \(index)", keyPEM: "key \(index)", notAfter: Date().addingTimeInterval(86_400)))
        }
        release.signal()
        writer.flush()
        #expect((1...2).contains(counter.commits.withLock { $0 }), "\(counter.commits.withLock { $0 }) commits")
        #expect(try state.loadIssuedLeaves().count == 1_000)
    }
}
