import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SDBoxCore
import ServiceLifecycle
import ObjectStore
import Storage

/// Delivers task webhooks. When a task with a callback ends, its result (as `GET /tasks/{id}/result`
/// shows it) is POSTed to the callback URL with `X-SDBox-Signature: sha256=<hex>`, the HMAC-SHA256 of the
/// body under the webhook secret. A failed attempt (no answer, or not 2xx) is retried after
/// `retrySeconds`, doubling up to `maxRetrySeconds`, until `maxAttempts`; every attempt is recorded on
/// the task. Pending deliveries are indexed in the task store, so they resume after a restart; they run
/// in their own tasks, never in the scheduler's.
package actor WebhookDelivery: Service {
    let tasks: any TaskStore
    let settings: WebhookSettings
    let key: SymmetricKey
    /// The body POSTed for a task.
    let payload: @Sendable (TaskRecord) throws -> Data
    let logger: Logger
    let due: AsyncStream<String>
    let dueContinuation: AsyncStream<String>.Continuation
    var delivering: Set<String> = []

    package init(tasks: any TaskStore, settings: WebhookSettings, secret: String, logger: Logger, payload: @escaping @Sendable (TaskRecord) throws -> Data) {
        self.tasks = tasks
        self.settings = settings
        self.key = SymmetricKey(data: Data(secret.utf8))
        self.payload = payload
        self.logger = logger
        (due, dueContinuation) = AsyncStream.makeStream(of: String.self)
    }

    /// Hears that a task ended (the scheduler's final observer), or that this box took over its webhook in a
    /// fleet; its webhook, if any, is delivered.
    package nonisolated func taskEnded(_ task: TaskRecord) {
        if task.callback?.state == .pending { dueContinuation.yield(task.id) }
    }

    // MARK: Service

    /// Resumes the deliveries a previous run left pending, then delivers webhooks as tasks end, until
    /// graceful shutdown.
    package func run() async throws {
        let pending = try await tasks.pendingCallbacks()
        if !pending.isEmpty { logger.info("resuming webhook deliveries", metadata: ["count": "\(pending.count)"]) }
        for task in pending { dueContinuation.yield(task.id) }
        // A receiver's redirect is an answer, not followed: it could lead where the target check forbids.
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        await withDiscardingTaskGroup { group in
            for await id in due.cancelOnGracefulShutdown() where delivering.insert(id).inserted {
                group.addTask {
                    await self.deliver(id, with: client)
                    await self.done(id)
                }
            }
            group.cancelAll()
        }
        try await client.shutdown()
    }

    func done(_ id: String) {
        delivering.remove(id)
    }

    /// Attempts a task's webhook until it is delivered or given up, waiting between attempts.
    nonisolated func deliver(_ id: String, with client: HTTPClient) async {
        while !Task.isCancelled {
            let stored: TaskRecord?
            do {
                // While the store cannot answer (PostgreSQL out of reach, a full disk), it is asked again each
                // second, here and for the attempt's record: a webhook is neither dropped nor sent again for
                // want of a read or a record. Shutdown ends the wait.
                stored = try await StoreFailure.retrying { try await self.tasks.get(id) }
            } catch {
                if !Task.isCancelled { logger.error("could not read a task to deliver its webhook", metadata: ["task": "\(id)", "error": "\(error)"]) }
                return
            }
            guard let task = stored, let callback = task.callback, callback.state == .pending else { return }
            // In a fleet, a box that stopped renewing its row (frozen, cut off) finds its webhooks taken over
            // when it comes back: it leaves them to the box that delivers them now. (When the database cannot
            // say, the attempt is made; its record is refused if the webhook was taken over.)
            if (try? await tasks.deliversWebhook(of: id)) == false { return leave(id) }
            let number = callback.attempts.count + 1
            if let last = callback.attempts.last {
                let wait = last.at.addingTimeInterval(TimeInterval(settings.delay(beforeAttempt: number).components.seconds)).timeIntervalSinceNow
                if wait > 0 {
                    try? await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
                    if Task.isCancelled { return }
                }
            }
            let target = settings.allowPrivateNetworks ? .allowed(url: callback.url, host: nil) : await OutboundTarget.webhooks.check(callback.url)
            let attempt: WebhookAttempt
            switch target {
            case .allowed(let url, let host): attempt = await post(task, to: url, host: host, attempt: number, with: client)
            case .refused(let reason), .unresolved(let reason): attempt = WebhookAttempt(at: Date(), status: nil, error: "not sent: \(reason)", milliseconds: 0)
            }
            // An attempt cut short by shutdown is not counted; it is made again at next start.
            if Task.isCancelled { return }
            // A forbidden target stays forbidden: no retries.
            let refused = if case .refused = target { true } else { false }
            let state: TaskCallback.State? = attempt.error == nil ? .delivered : number >= settings.maxAttempts || refused ? .failed : nil
            do {
                try await StoreFailure.retrying {
                    try await self.tasks.updateCallback(id) { callback in
                        callback.attempts.append(attempt)
                        if let state { callback.state = state }
                    }
                }
            } catch TaskStoreError.webhookTakenOver {
                return leave(id)
            } catch {
                // At shutdown, the wait for a store that cannot answer ends here; the attempt is made again at next start.
                if !Task.isCancelled { logger.error("could not record a webhook attempt", metadata: ["task": "\(id)", "error": "\(error)"]) }
                return
            }
            let metadata: Logger.Metadata = ["task": "\(id)", "attempt": "\(number)", "url": "\(callback.url)", "error": "\(attempt.error ?? "")"]
            switch state {
            case .delivered: logger.info("webhook delivered", metadata: metadata)
            case .failed: logger.warning("webhook given up", metadata: metadata)
            default: logger.info("webhook attempt failed; will retry", metadata: metadata)
            }
            if state != nil { return }
        }
    }

    /// Leaves task `id`'s webhook to the box that took it over.
    nonisolated func leave(_ id: String) {
        logger.notice("webhook taken over by another box; this box leaves it", metadata: ["task": "\(id)"])
    }

    /// One POST of a task's result; `host`, when given, is the Host header (the URL names the checked address).
    nonisolated func post(_ task: TaskRecord, to url: String, host: String?, attempt: Int, with client: HTTPClient) async -> WebhookAttempt {
        let started = Date()
        let clock = ContinuousClock.now
        func outcome(_ status: Int?, _ error: String?) -> WebhookAttempt {
            WebhookAttempt(at: started, status: status, error: error, milliseconds: Int(clock.duration(to: .now) / .milliseconds(1)))
        }
        let body: Data
        do {
            body = try payload(task)
        } catch {
            return outcome(nil, "cannot encode the result: \(error)")
        }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        if let host { request.headers.add(name: "Host", value: host) }
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "sdbox-webhook")
        request.headers.add(name: "X-SDBox-Task-Id", value: task.id)
        request.headers.add(name: "X-SDBox-Attempt", value: "\(attempt)")
        request.headers.add(name: "X-SDBox-Signature", value: "sha256=" + Self.signature(of: body, key: key))
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await client.execute(request, timeout: .seconds(Int64(settings.timeoutSeconds)))
            let answer = try await response.body.collect(upTo: 64 << 10)
            let status = Int(response.status.code)
            guard (200..<300).contains(status) else {
                return outcome(status, "the receiver answered \(status): \(String(decoding: answer.readableBytesView.prefix(200), as: UTF8.self))")
            }
            return outcome(status, nil)
        } catch {
            return outcome(nil, "\(error)")
        }
    }

    /// The hex HMAC-SHA256 of `body` under `key`: what `X-SDBox-Signature` carries after `sha256=`.
    static func signature(of body: Data, key: SymmetricKey) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: body, using: key)).hexString
    }

    /// The secret kept in `path` (its text, trimmed), making a random one (64 hex digits, readable by the
    /// owner only) when there is none.
    package static func loadOrCreateSecret(at path: String) throws -> String {
        let text = { (data: Data) in String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
        let data = try SecretFile.loadOrCreate(at: path, isValid: { text($0).count >= 16 }) {
            var generator = SystemRandomNumberGenerator()
            return Data(((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }.hexString + "\n").utf8)
        }
        return text(data)
    }
}
