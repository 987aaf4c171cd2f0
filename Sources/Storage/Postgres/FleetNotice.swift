import Foundation
import SDBoxCore

/// A message from one box of a fleet to the others, sent with PostgreSQL's `NOTIFY` on the channel
/// ``channel`` (delivered when the sending transaction commits, to every box that listens) and read by
/// ``PostgresNotifications``. A payload stays under PostgreSQL's 8000 bytes: progress goes without its
/// preview image.
public struct FleetNotice: Codable, Sendable, Equatable {
    /// What happened.
    public enum Event: String, Codable, Sendable {
        /// A task was queued without a claim (submitted, or given back): a box with room may claim it.
        case queued
        /// A task's record changed (running, or final): waiters and streams on other boxes look again.
        case task
        /// The latest progress of a task running on `node`.
        case progress
        /// A client asked `node`, which holds the task's claim, to cancel it.
        case cancel
        /// Not a message: the listening connection was (re)opened, so notices may have been missed and
        /// everything worth a look is looked at again.
        case resync
    }

    /// The channel every notice is sent on.
    public static let channel = "sdbox_fleet"

    public var event: Event
    /// The task concerned.
    public var id: String?
    /// The task's model (`queued`).
    public var model: String?
    /// The task's state as written (`task`).
    public var state: TaskState?
    /// The box that sent it (`progress`), or that is asked (`cancel`).
    public var node: String?
    /// The worker's progress report (`progress`), without `current_image`.
    public var progress: A1111.Progress?

    public init(
        _ event: Event, id: String? = nil, model: String? = nil, state: TaskState? = nil, node: String? = nil, progress: A1111.Progress? = nil
    ) {
        self.event = event
        self.id = id
        self.model = model
        self.state = state
        self.node = node
        self.progress = progress
    }

    /// The notice as `NOTIFY`'s payload.
    public func payload() -> String {
        (try? String(decoding: JSONEncoder().encode(self), as: UTF8.self)) ?? #"{"event":"resync"}"#
    }

    /// The notice a payload carries; nil for one this box cannot read (sent by a newer sdbox, say).
    public init?(payload: String) {
        guard let notice = try? JSONDecoder().decode(FleetNotice.self, from: Data(payload.utf8)) else { return nil }
        self = notice
    }
}
