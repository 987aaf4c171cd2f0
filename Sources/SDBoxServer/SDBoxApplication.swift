import Appliance
import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ObjectStore
import SDBoxCore
import Scheduler
import ServiceLifecycle
import Storage

/// Builds the sdbox server: opens the data folder (objects, models) and the stores (LMDB in it, or
/// PostgreSQL), starts the scheduler as a service and routes the task API, the A1111-compatible API,
/// models, objects and the web pages.
public enum SDBoxApplication {
    /// The application for `configuration`; run it with `runService()`.
    ///
    /// - Parameter executablePath: This executable, used to start reference workers.
    ///   - metrics: The registry that swift-metrics was bootstrapped with, served at `/metrics`.
    public static func build(
        configuration: ServerConfiguration, executablePath: String, metrics: PrometheusCollectorRegistry, logger: Logger
    ) async throws -> some ApplicationProtocol {
        try configuration.checkSafety()
        let folder = DataFolder(configuration)
        Gauge(label: "sdbox_node_info", dimensions: [("node", configuration.node.name)]).record(1)
        let webRoot = try WebRoutes.locateRoot(configured: configuration.http.webRoot, executablePath: executablePath)
        if let webRoot {
            logger.info("web pages from \(webRoot)")
        } else {
            logger.notice("no web pages found (set webRoot); the API alone is served")
        }
        try FileManager.default.createDirectory(atPath: folder.path, withIntermediateDirectories: true)
        if folder.isShared {
            try FileManager.default.createDirectory(atPath: folder.shared, withIntermediateDirectories: true)
            logger.info("shared folder \(folder.shared): objects, models, secrets and styles", metadata: ["node": "\(configuration.node.name)"])
        }
        // LMDB commits and object files mostly wait on fsync: they get threads of their own, more than the
        // cores, so that writes waiting for the disk never hold up a read or the thumbnails' and hashes' work.
        let storageThreads = NIOThreadPool(numberOfThreads: max(8, 4 * System.coreCount))
        storageThreads.start()
        let stores = try await DataStores.open(configuration.database, fleet: configuration.fleet, folder: folder, node: configuration.node.name, threadPool: storageThreads, logger: logger)
        logger.info("database: \(stores.summary)")
        let tasks = stores.tasks
        let catalog = stores.catalog
        let objects = try ObjectStore(
            root: folder.objects, minimumFreeBytes: Int64(configuration.images.minFreeDiskMiB) << 20, threadPool: storageThreads
        )
        let signer = URLSigner(secret: try URLSigner.loadOrCreateSecret(at: folder.urlSigningKey))
        // The scheduler section, with what it learns at start: the launch profiles, the folder, this executable.
        var schedulerConfiguration = configuration.scheduler
        schedulerConfiguration.profiles = configuration.workers.launchProfiles
        schedulerConfiguration.defaultProfile = configuration.workers.defaultProfileName
        schedulerConfiguration.remoteWorkers = configuration.workers.remote
        schedulerConfiguration.dataDirectory = folder.path
        schedulerConfiguration.sharedDirectory = folder.isShared ? folder.shared : nil
        schedulerConfiguration.executablePath = executablePath
        schedulerConfiguration.sharedQueue = stores.fleet != nil
        let models = try ModelRegistry(
            catalog: catalog, modelsDirectory: schedulerConfiguration.modelsDirectory, sharedWithOtherBoxes: folder.isShared, logger: logger
        )
        if configuration.workers.usesReferenceWorker {
            logger.notice("workers: the built-in reference worker, which draws test images, not diffusion; configure workers.launch for A1111, Forge or SD.Next")
            if try await models.installDemoCheckpointIfEmpty() {
                logger.notice("wrote \(DemoCheckpoint.fileName) to the empty models folder")
            }
        }
        try await models.refresh()
        let installer = ModelInstaller(registry: models, catalog: catalog, settings: configuration.models, logger: logger)
        try await installer.load()
        let inventory = await GPUInventory.detect(configured: configuration.scheduler.gpus, cpuSlots: configuration.scheduler.cpuSlots)
        if inventory.gpus.isEmpty {
            logger.notice("no GPU: CPU-only mode, \(inventory.cpuSlots) worker slots")
        }
        let scheduler = Scheduler(
            configuration: schedulerConfiguration, inventory: inventory, tasks: tasks, catalog: catalog, objects: objects,
            client: HTTPWorkerClient(), logger: logger
        )
        let thumbnails = ThumbnailService(
            objects: objects, longestSide: configuration.images.thumbnailSide, quality: configuration.images.thumbnailQuality, logger: logger
        )
        let fleet = stores.fleet.map { links in
            FleetMember(
                links: links, scheduler: scheduler, tasks: tasks, settings: configuration.fleet, maxAttempts: schedulerConfiguration.maxAttempts,
                fairnessSeconds: schedulerConfiguration.fairnessWaitSeconds, logger: logger
            )
        }
        // The fleet's member before the scheduler: it stops after it, and then gives back what this box held.
        var background: [any Service] = (fleet.map { [$0] } ?? []) + [scheduler, thumbnails]
        if configuration.images.retentionDays > 0 {
            background.append(RetentionSweeper(
                tasks: tasks, objects: objects, maxAge: .seconds(configuration.images.retentionDays * 86400),
                interval: .seconds(configuration.images.sweepIntervalMinutes * 60), logger: logger
            ))
        }
        // The quotas' tally is built before the scheduler runs, so every task that ends from now on is one it counted.
        let quotas = try await QuotaGuard.load(catalog: catalog, tasks: tasks)
        // In a fleet, every box counts what every box's tasks used, and each user's unfinished tasks this
        // box accepted before it stopped count in the user's share of the queue.
        await fleet?.observeTasksEndedElsewhere { task in quotas.taskEnded(task) }
        try await fleet?.countTasksAcceptedBeforeStart()
        await fleet?.observeSettings { try await quotas.reload() }
        let services = Services(
            configuration: configuration, tasks: tasks, catalog: catalog, models: models, scheduler: scheduler,
            objects: objects, signer: signer, keys: stores.keys,
            accounts: UserAccounts(store: stores.users, sessionSeconds: configuration.auth.sessionSeconds), quotas: quotas,
            logger: logger,
            inputs: ImageInputResolver(
                objects: objects, maxPixels: configuration.images.maxPixels, maxBytes: configuration.images.maxInputMiB << 20
            ), thumbnails: thumbnails, fleet: fleet
        )
        let webhooks = WebhookDelivery(
            tasks: tasks, settings: configuration.webhooks,
            secret: try configuration.webhooks.secret ?? WebhookDelivery.loadOrCreateSecret(at: folder.webhookSecret), logger: logger
        ) { task in
            Data(try Response.jsonBytes(services.resultAnswer(of: task, base: task.callback?.baseURL ?? "", webhook: false)))
        }
        // In a fleet, the webhooks of a box that stopped are delivered by the box that takes them over.
        await fleet?.observeWebhookTakeovers { task in webhooks.taskEnded(task) }
        let schedulerEvents = SchedulerEventHandler(
            events: scheduler.events, models: models, thumbnails: thumbnails, webhooks: webhooks, quotas: quotas
        )
        let events = TaskEventHub(
            tasks: tasks, scheduler: scheduler, interval: .milliseconds(configuration.events.intervalMilliseconds), readsOnChange: fleet != nil
        )
        await fleet?.observeTaskChanges { id in await events.taskChanged(id) }
        let routes = router(services: services, installer: installer, events: events, metrics: metrics, webRoot: webRoot)
        return Application(
            router: routes,
            server: .guardedWebSocketUpgrade(
                webSocketRouter: routes,
                configuration: .init(http1: .init(idleTimeout: .seconds(Int64(configuration.http.requestIdleTimeoutSeconds)))),
                limits: configuration.connections
            ),
            configuration: .init(address: .hostname(configuration.http.host, port: configuration.http.port), serverName: "sdbox"),
            // The database's pool first: the service group stops services in reverse order, so it closes last.
            services: stores.services + background + [webhooks, events, schedulerEvents, installer],
            logger: logger
        )
    }

    static func router(
        services: Services, installer: ModelInstaller, events: TaskEventHub, metrics: PrometheusCollectorRegistry, webRoot: String?
    ) -> Router<SDBoxRequestContext> {
        let router = Router(context: SDBoxRequestContext.self)
        if !services.configuration.cors.allowOrigins.isEmpty { router.add(middleware: CORSMiddleware(settings: services.configuration.cors)) }
        router.add(middleware: RequestMetricsMiddleware())
        router.add(middleware: JSONErrorMiddleware())
        let configuration = services.configuration
        router.add(
            middleware: AuthMiddleware(
                keys: services.keys, accounts: services.accounts, required: configuration.auth.required,
                limiter: configuration.limits.requestsPerMinute > 0 ? RateLimiter(perMinute: configuration.limits.requestsPerMinute) : nil
            )
        )
        KeyRoutes(keys: services.keys).register(on: router)
        RemoteWorkerRoutes(scheduler: services.scheduler).register(on: router)
        QueueRoutes(services: services).register(on: router)
        UsageRoutes(tasks: services.tasks).register(on: router)
        QuotaRoutes(quotas: services.quotas, keys: services.keys).register(on: router)
        UserRoutes(accounts: services.accounts).register(on: router)
        ObservabilityRoutes(services: services, registry: metrics).register(on: router)
        TaskRoutes(services: services).register(on: router)
        A1111Routes(services: services).register(on: router)
        StyleRoutes(services: services).register(on: router)
        ModelWideRoutes(services: services).register(on: router)
        PNGInfoRoutes(services: services).register(on: router)
        EventRoutes(services: services, hub: events).register(on: router)
        CatalogRoutes(services: services).register(on: router)
        PoolRoutes(services: services).register(on: router)
        AdminModelRoutes(services: services).register(on: router)
        ModelInstallRoutes(installer: installer).register(on: router)
        ObjectRoutes(services: services).register(on: router)
        WebRoutes(root: webRoot).register(on: router)
        // The catch-all routes of passthrough; sdbox's own routes above win over them.
        PassthroughRoutes(services: services).register(on: router)
        return router
    }
}
