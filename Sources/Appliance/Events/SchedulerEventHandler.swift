import Scheduler
import SDBoxCore
import ServiceLifecycle

/// Acts on what the scheduler tells (``SchedulerEvent``), in order: model states go to the registry,
/// finished tasks to the quotas' tally, to webhook delivery and to the thumbnail maker. A service of its own, so the
/// scheduler never waits for any of them.
package struct SchedulerEventHandler: Service {
    let events: AsyncStream<SchedulerEvent>
    let models: ModelRegistry
    let thumbnails: ThumbnailService
    let webhooks: WebhookDelivery
    let quotas: QuotaGuard

    package init(
        events: AsyncStream<SchedulerEvent>, models: ModelRegistry, thumbnails: ThumbnailService, webhooks: WebhookDelivery, quotas: QuotaGuard
    ) {
        self.events = events
        self.models = models
        self.thumbnails = thumbnails
        self.webhooks = webhooks
        self.quotas = quotas
    }

    package func run() async {
        for await event in events.cancelOnGracefulShutdown() {
            switch event {
            case .modelStatus(let model, let status, let error):
                await models.schedulerReported(model: model, status: status, error: error)
            case .taskFinished(let task):
                quotas.taskEnded(task)
                webhooks.taskEnded(task)
                thumbnails.taskEnded(task)
            }
        }
    }
}
