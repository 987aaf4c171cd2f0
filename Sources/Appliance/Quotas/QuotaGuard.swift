import Foundation
import SDBoxCore
import Storage
import Synchronization

/// Quotas per user and per API key, enforced on submission: the quotas an admin set (kept in the
/// catalog, held here in memory) and the ``QuotaTally`` of what each used, checked and counted in one
/// step under one lock, so that concurrent submissions cannot all pass a check only one of them should.
/// No submission reads the store; only setting a quota writes it.
public final class QuotaGuard: Sendable {
    struct State {
        var table: QuotaTable
        var tally: QuotaTally
    }

    let catalog: any CatalogStore
    private let state: Mutex<State>

    /// Quotas held as `table` says (the catalog's, which changes write to) over `tally`; ``load(catalog:tasks:now:)``
    /// reads both from the stores.
    public init(catalog: any CatalogStore, table: QuotaTable = QuotaTable(), tally: QuotaTally = QuotaTally(now: Date())) {
        self.catalog = catalog
        self.state = Mutex(State(table: table, tally: tally))
    }

    /// The quotas as stored, and the tally of the current month's tasks: a scan of the tasks created since
    /// the month began, page by page (at start, before any submission).
    public static func load(catalog: any CatalogStore, tasks: any TaskStore, now: Date = Date()) async throws -> QuotaGuard {
        var tally = QuotaTally(now: now)
        var filter = TaskFilter(since: tally.month.start)
        while true {
            let page = try await tasks.recent(limit: 1000, user: nil, filter: filter)
            for task in page.tasks { tally.add(task) }
            guard let next = page.next else { break }
            filter.before = next
        }
        return QuotaGuard(catalog: catalog, table: try await catalog.quotas(), tally: tally)
    }

    /// Counts a new task against its user's and its key's quotas, or refuses it: 429 naming the limit,
    /// its value, what is used and left, and when it resets (`resetsAt`, and `Retry-After` in seconds).
    /// A task admitted is then stored, or ``withdraw(_:)``n.
    public func admit(_ task: TaskRecord) throws {
        let exceeded = state.withLock { state in
            let quotas = QuotaSubject.of(task).reduce(into: [QuotaSubject: Quota]()) { $0[$1] = state.table[$1] }
            return state.tally.admit(task, quotas: quotas, now: task.createdAt)
        }
        guard let exceeded else { return }
        throw APIError(exceeded, task: task)
    }

    /// Takes back a task that was admitted but not stored.
    public func withdraw(_ task: TaskRecord) {
        state.withLock { $0.tally.withdraw(task) }
    }

    /// Counts what a task that reached its final state used.
    public func taskEnded(_ task: TaskRecord, now: Date = Date()) {
        state.withLock { $0.tally.finish(task, now: now) }
    }

    /// Every quota set, with what its subject used in the current day and month.
    public func statuses(now: Date = Date()) -> [QuotaStatus] {
        state.withLock { state in
            state.tally.advance(to: now)
            return state.table.subjects.map { QuotaStatus(subject: $0, quota: state.table[$0] ?? Quota(), tally: state.tally) }
        }
    }

    /// The quota set on `subject`, with what it used.
    public func status(of subject: QuotaSubject, now: Date = Date()) -> QuotaStatus? {
        statuses(now: now).first { $0.subject == subject }
    }

    /// Sets (or replaces) the quota of `subject`, on disk and then here.
    public func set(_ quota: Quota, for subject: QuotaSubject) async throws {
        adopt(try await catalog.updateQuotas { $0[subject] = quota })
    }

    /// Removes the quota of `subject`; false when it had none.
    public func remove(_ subject: QuotaSubject) async throws -> Bool {
        guard state.withLock({ $0.table[subject] }) != nil else { return false }
        adopt(try await catalog.updateQuotas { $0[subject] = nil })
        return true
    }

    /// Reads the quotas again from the catalogue, where another box of the fleet may have changed them.
    public func reload() async throws {
        adopt(try await catalog.quotas())
    }

    /// Holds a table a change answered, unless a later change's is already held.
    private func adopt(_ table: QuotaTable) {
        state.withLock { state in
            if table.revision > state.table.revision { state.table = table }
        }
    }
}
