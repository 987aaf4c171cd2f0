import Foundation
import Hummingbird
import Logging
import ObjectStore
import Prometheus
import SDBoxCore
import Scheduler
import Storage

@testable import Appliance
@testable import SDBoxServer

/// sdbox's router over real stores in a temporary folder, without a listening server: for the routes'
/// contracts in process (HummingbirdTesting's router mode) and for what the router holds.
struct RouterBench {
    let directory: TemporaryDirectory
    let configuration: ServerConfiguration
    let router: Router<SDBoxRequestContext>

    init(configuration: ServerConfiguration = ServerConfiguration()) throws {
        directory = try TemporaryDirectory()
        self.configuration = configuration
        let logger = Logger(label: "test")
        let database = try Database(path: directory.path + "/db")
        let tasks = LMDBTaskStore(database: database)
        let catalog = LMDBCatalogStore(database: database)
        let objects = try ObjectStore(root: directory.path + "/objects")
        let scheduler = Scheduler(
            configuration: SchedulerConfiguration(dataDirectory: directory.path, executablePath: "/bin/false"),
            inventory: GPUInventory(gpus: [], cpuSlots: 1, source: .none), tasks: tasks, catalog: catalog, objects: objects,
            client: HTTPWorkerClient(), logger: logger
        )
        let models = try ModelRegistry(catalog: catalog, modelsDirectory: directory.path + "/models", logger: logger)
        let services = Services(
            configuration: configuration, tasks: tasks, catalog: catalog, models: models,
            scheduler: scheduler, objects: objects, signer: URLSigner(secret: Data(repeating: 1, count: 32)),
            keys: LMDBKeyStore(database: database), accounts: UserAccounts(store: LMDBUserStore(database: database), sessionSeconds: 3600),
            quotas: QuotaGuard(catalog: catalog), logger: logger, inputs: ImageInputResolver(objects: objects, maxPixels: 1 << 20),
            thumbnails: ThumbnailService(objects: objects, longestSide: 256, quality: 85, logger: logger)
        )
        let events = TaskEventHub(tasks: tasks, scheduler: scheduler, interval: .seconds(1))
        let installer = ModelInstaller(registry: models, catalog: catalog, settings: configuration.models, logger: logger)
        router = SDBoxApplication.router(services: services, installer: installer, events: events, metrics: PrometheusCollectorRegistry(), webRoot: nil)
    }
}
