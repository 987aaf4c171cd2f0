import Foundation
import ImageCodec
import NIOHTTP1
import SDBoxCore
import Synchronization
import Testing

/// The admin web pages in headless Chromium against the real binary: each page is driven as a person
/// would (fill, click, choose files) and checked on screen and through the API. Screenshots of every
/// page go to `test-output/screenshots/`.
@Suite(
    .serialized, .timeLimit(.minutes(3)),
    .enabled(if: Chromium.isAvailable, "chromium is not installed: run scripts/install-test-deps.sh (scripts/test does) to run the browser tests")
)
struct WebPagesTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let screenshots = repository + "/test-output/screenshots"

    /// A box with one configured GPU, quick reference workers and a few checkpoints, serving this
    /// repository's pages (not those of an installed package, which would come first).
    static let config = """
        webRoot: \(repository)/web
        scheduler:
          maxInstances: 2
          gpus:
            - {index: 0, name: Configured GPU, memoryMiB: 24576}
          pool: {gpuMemoryMiB: 6144}
        workers:
          reference: {stepMilliseconds: 20, minimumStepMilliseconds: 2}
        """
    static let models = ["demo.safetensors": DemoCheckpoint.contents(), "landscape-v2.safetensors": DemoCheckpoint.contents()]

    /// Runs `body` with a browser tab, then fails on any uncaught exception or console error of the pages.
    func withPage(_ server: ServerProcess, width: Int = 1280, height: Int = 900, _ body: (BrowserPage) async throws -> Void) async throws {
        let browser = try Chromium(log: server.dataDirectory + "/chromium.log")
        do {
            let page = try await browser.newPage(width: width, height: height)
            try await body(page)
            #expect(browser.problems.isEmpty, "the pages reported: \(browser.problems)")
            browser.shutDown()
        } catch {
            browser.shutDown()
            throw error
        }
    }

    func generate(_ server: ServerProcess, _ body: JSONValue, async: Bool = false) async throws -> String {
        let (status, answer) = try await server.json(.POST, "/txt2img", body, headers: async ? [("Request-Type", "async")] : [])
        #expect(status == 200, "\(answer)")
        return try #require(answer["taskId"]?.stringValue)
    }

    @Test func playgroundRunsTxt2imgAndImg2imgAndShowsTheImages() async throws {
        let server = try await ServerProcess(config: Self.config, models: Self.models)
        defer { server.destroy() }
        try await withPage(server) { page in
            try await page.open(server.baseURL + "/#playground")
            try await page.waitFor("document.querySelector('[name=stable_diffusion_model]')?.options.length === 2", "the models in the form")
            try await page.fill("[name=prompt]", "a red fox in the snow")
            try await page.fill("[name=negative_prompt]", "blurry")
            try await page.fill("[name=steps]", "12")
            try await page.fill("[name=width]", "256")
            try await page.fill("[name=height]", "256")
            try await page.fill("[name=seed]", "42")
            try await page.fill("[name=batch_size]", "2")
            let curl = try await page.evaluate("document.querySelector('pre.curl').textContent").stringValue ?? ""
            #expect(curl.contains("curl -X POST \(server.baseURL)/txt2img"), "\(curl)")
            #expect(curl.contains(#""prompt":"a red fox in the snow""#) && curl.contains(#""seed":42"#), "\(curl)")

            try await page.click("form button[type=submit]")
            try await page.waitFor("document.querySelectorAll('.images img').length === 2 && [...document.querySelectorAll('.images img')].every((img) => img.complete && img.naturalWidth === 256)", "two 256-pixel images")
            let taskID = try #require(try await page.evaluate("document.querySelector('[data-task] a').textContent.replace('task ', '')").stringValue)
            let result = try await server.waitForTask(taskID)
            #expect(result["status"] == "succeeded")
            #expect(result["parameters"]?["prompt"] == "a red fox in the snow")
            #expect(result["info"]?["all_seeds"] == [42, 43])
            #expect(try await page.evaluate("document.querySelector('.images figcaption').textContent") == "Seed 42")
            try await page.screenshot(Self.screenshots + "/playground.png")

            // img2img from a chosen file: the input is shown, sent, and the result has the asked size.
            let input = server.dataDirectory + "/input.png"
            try Data(base64Encoded: try solidPNGBase64(width: 128, height: 128, rgb: (200, 60, 30)))!.write(to: URL(fileURLWithPath: input))
            try await page.click("input[name=kind][value=img2img]")
            try await page.setFiles("input[name=init_image]", [input])
            try await page.waitFor("document.querySelector('.init-preview')?.naturalWidth === 128", "the input image preview")
            let img2imgCurl = try await page.evaluate("document.querySelector('pre.curl').textContent").stringValue ?? ""
            #expect(img2imgCurl.contains("/img2img") && img2imgCurl.contains(#""$(base64 -w0 input.png)""#), "\(img2imgCurl)")
            try await page.fill("[name=batch_size]", "1")
            try await page.click("form button[type=submit]")
            try await page.waitFor("document.querySelector('[data-task] a')?.textContent !== 'task \(taskID)' && document.querySelectorAll('.images img').length === 1 && document.querySelector('.images img').naturalWidth === 256", "the img2img image")
            let second = try #require(try await page.evaluate("document.querySelector('[data-task] a').textContent.replace('task ', '')").stringValue)
            let (_, task) = try await server.json(.GET, "/tasks/\(second)")
            #expect(task["kind"] == "img2img")
            #expect(task["request"]?["init_images"]?.arrayValue?.count == 1)

            // The same page on a phone.
            try await page.resize(width: 390, height: 844)
            try await page.open(server.baseURL + "/#playground")
            try await page.waitFor("document.querySelectorAll('.images img').length === 1 && document.querySelector('.images img').complete", "the last result again")
            #expect(try await page.evaluate("document.documentElement.scrollWidth <= 390") == true, "nothing wider than the phone")
            try await page.screenshot(Self.screenshots + "/playground-phone.png")
        }
    }

    @Test func tasksAreListedFilteredAndCancelled() async throws {
        let server = try await ServerProcess(config: Self.config.replacingOccurrences(of: "maxInstances: 2", with: "maxInstances: 1"), models: Self.models)
        defer { server.destroy() }
        for prompt in ["a lighthouse", "a forest"] {
            _ = try await generate(server, ["prompt": .string(prompt), "steps": 4, "width": 64, "height": 64])
        }
        // A slow task (8 images of 150 steps at 512×512: about 24 s, so that a loaded machine still cancels it
        // mid-run; at 1024×1024 the debug build's drawing of the image after an interrupt took over 20 s in
        // CI) and one queued behind it.
        let slow: JSONValue = ["stable_diffusion_model": "demo", "prompt": "slow", "steps": 150, "n_iter": 8, "width": 512, "height": 512]
        let running = try await generate(server, slow, async: true)
        let queued = try await generate(server, slow, async: true)
        try await withPage(server) { page in
            try await page.open(server.baseURL + "/#tasks")
            try await page.waitFor("document.querySelector('tr[data-task=\"\(running)\"]')?.dataset.status === 'running' && document.querySelector('tr[data-task=\"\(queued)\"]')?.dataset.status === 'waiting'", "the running and the waiting task")
            #expect(try await page.evaluate("document.querySelectorAll('tbody tr[data-task]').length") == 4)
            try await page.screenshot(Self.screenshots + "/tasks.png")

            // Filters: by state, then by model (the server filters; the table follows).
            try await page.fill("select[name=state]", "succeeded")
            try await page.waitFor("document.querySelectorAll('tbody tr[data-task]').length === 2 && [...document.querySelectorAll('tbody tr[data-task]')].every((row) => row.dataset.status === 'succeeded')", "only the succeeded tasks")
            try await page.fill("select[name=state]", "")
            try await page.fill("select[name=model]", "landscape-v2.safetensors")
            try await page.waitFor("document.querySelector('.empty')?.hidden === false && !document.querySelector('tbody tr[data-task]')", "no task of the other model")
            try await page.click("form[role=search] button[type=reset]")
            try await page.waitFor("document.querySelectorAll('tbody tr[data-task]').length === 4", "all tasks again")

            // Cancel the queued task from the table.
            try await page.click("tr[data-task=\"\(queued)\"] button.danger")
            try await page.waitFor("document.querySelector('tr[data-task=\"\(queued)\"]')?.dataset.status === 'cancelled'", "the queued task cancelled")
            #expect(try await server.waitForTask(queued)["status"] == "cancelled")

            // The running task's page: live progress, then cancel.
            try await page.click("a[href=\"#tasks/\(running)\"]")
            try await page.waitFor("/step \\d+ of 150/.test(document.querySelector('main [aria-live=polite]')?.textContent)", "the running task's progress")
            #expect(try await page.evaluate("document.querySelector('main').innerText.includes('slow')") == true, "the prompt among the parameters")
            try await page.screenshot(Self.screenshots + "/task.png")
            try await page.click("main .page-head button.danger")
            try await page.waitFor("document.querySelector('.page-head .badge')?.textContent === 'cancelled'", "the task cancelled on its page")
            #expect(try await server.waitForTask(running)["status"] == "cancelled")
        }
    }

    @Test func workersPageShowsTheGPUAndWorkersAndEditsAPool() async throws {
        let server = try await ServerProcess(config: Self.config, models: Self.models)
        defer { server.destroy() }
        _ = try await generate(server, ["prompt": "warm up", "steps": 4, "width": 64, "height": 64])
        let busy = try await generate(server, ["stable_diffusion_model": "landscape-v2", "prompt": "a valley", "steps": 150, "width": 1024, "height": 1024], async: true)
        try await withPage(server) { page in
            try await page.open(server.baseURL + "/#workers")
            try await page.waitFor("document.querySelector('[role=meter][aria-label=\"GPU 0 memory\"]')?.getAttribute('aria-valuenow') === '12288'", "two workers' memory reserved on GPU 0")
            try await page.waitFor("document.querySelector('tr[data-model=\"landscape-v2.safetensors\"] .badge')?.textContent === 'busy' && document.querySelector('tr[data-model=\"demo.safetensors\"] .badge')?.textContent === 'ready'", "one busy and one ready worker")
            #expect(try await page.evaluate("document.querySelector('tr[data-model=\"landscape-v2.safetensors\"] a')?.textContent") == .string(busy))
            #expect(try await page.evaluate("document.querySelector('p.notice[role=note]')?.textContent.includes('reference worker')") == true)
            try await page.screenshot(Self.screenshots + "/workers.png")

            // Edit the demo pool: at most 3 workers, idle for 120 s.
            let row = "tr[data-pool=\"demo.safetensors\"]"
            try await page.waitFor("document.querySelector('\(row)')", "the demo pool")
            try await page.fill("\(row) input[name=maxInstances]", "3")
            try await page.fill("\(row) input[name=idleTimeout]", "120")
            try await page.click("\(row) button")
            try await page.waitFor("document.querySelector('\(row)')?.dataset.dirty === undefined && document.querySelector('\(row) input[name=maxInstances]').value === '3'", "the pool saved")
            let (_, functions) = try await server.json(.GET, "/list/sdapi/functions")
            let demo = functions["functions"]?.arrayValue?.first { $0["model"] == "demo.safetensors" }
            #expect(demo?["settings"]?["maxInstances"] == 3)
            #expect(demo?["settings"]?["idleTimeoutSeconds"] == 120)

            // A value the server refuses is said, and nothing changes.
            try await page.fill("\(row) input[name=minInstances]", "5")
            try await page.click("\(row) button")
            try await page.waitFor("document.querySelector('.toast.error')?.textContent.includes('minInstances')", "the refusal")
            let (_, after) = try await server.json(.GET, "/list/sdapi/functions")
            #expect(after["functions"]?.arrayValue?.first { $0["model"] == "demo.safetensors" }?["settings"]?["minInstances"] == 0)
        }
        _ = try await server.json(.POST, "/tasks/\(busy)/cancellation")
    }

    @Test func workersPageAddsAndRemovesARemoteWorker() async throws {
        let remote = try await RemoteWorkerTests.RemoteServer(checkpoint: "demo.safetensors", stepMilliseconds: 5)
        defer { remote.destroy() }
        let nothing = try #require(FreePort.allocate())
        // Self.config ends in its `workers` section: a remote worker at a wrong URL joins it.
        let config = Self.config + "\n  remote:\n    - {name: nowhere, url: \"http://127.0.0.1:\(nothing)\"}\n"
        let server = try await ServerProcess(config: config, models: Self.models)
        defer { server.destroy() }
        try await withPage(server) { page in
            try await page.open(server.baseURL + "/#workers")
            try await page.waitFor("document.querySelector('section[aria-labelledby=remote-title]')?.hidden === false", "the remote workers section")
            try await page.waitFor(
                "[...document.querySelectorAll('tr[data-worker]')].some((row) => row.textContent.includes('nowhere') && row.textContent.includes('down') && row.textContent.includes('unreachable'))",
                "the wrong URL's worker down, with why"
            )
            _ = try await page.evaluate("document.querySelector('section[aria-labelledby=remote-title] details').open = true")
            try await page.fill("input[name=remoteName]", "gpu-pc")
            try await page.fill("input[name=remoteURL]", remote.url)
            try await page.fill("input[name=remoteAuth]", "studio:hunter2")
            try await page.click("form[aria-label='Add a remote worker'] button[type=submit]")
            try await page.waitFor("document.querySelector('tr[data-remote=gpu-pc]')?.textContent.includes('studio:***')", "the remote worker listed, its password masked")
            try await page.waitFor("[...document.querySelectorAll('tr[data-worker]')].some((row) => row.textContent.includes('gpu-pc · \(remote.url)') && row.textContent.includes('ready'))", "the remote worker ready in the workers table")
            #expect(try await page.evaluate("document.body.innerText.includes('hunter2')") == false)
            try await page.screenshot(Self.screenshots + "/workers-remote.png")
            try await page.click("tr[data-remote=gpu-pc] button")
            try await page.waitFor("document.querySelector('dialog[open]')", "the confirmation")
            _ = try await page.evaluate("[...document.querySelectorAll('dialog[open] button')].find((b) => b.textContent === 'Remove').click()")
            try await page.waitFor("!document.querySelector('tr[data-remote=gpu-pc]')", "the remote worker removed")
        }
        let (_, list) = try await server.json(.GET, "/admin/workers/remote")
        #expect(list["remoteWorkers"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["nowhere"], "only the configured one is left")
    }

    @Test func tasksPagePausesAndResumesTheQueueAndMovesATaskToTheFront() async throws {
        let server = try await ServerProcess(config: Self.config, models: Self.models)
        defer { server.destroy() }
        try await withPage(server) { page in
            try await page.open(server.baseURL + "/#tasks")
            try await page.waitFor("[...document.querySelectorAll('.page-head button')].some((b) => b.textContent === 'Pause queue')", "the pause button")
            _ = try await page.evaluate("[...document.querySelectorAll('.page-head button')].find((b) => b.textContent === 'Pause queue').click()")
            try await page.waitFor("document.querySelector('p.notice[role=status]')?.hidden === false", "the paused notice")
            #expect(try await server.json(.GET, "/admin/queue").1["paused"] == true)
            let first = try await generate(server, ["prompt": "first", "steps": 2, "width": 64, "height": 64], async: true)
            let second = try await generate(server, ["prompt": "second", "steps": 2, "width": 64, "height": 64], async: true)
            try await page.waitFor("document.querySelector('tr[data-task=\"\(second)\"] button[aria-label^=\"Move task\"]')", "the waiting task's To front button")
            try await page.click("tr[data-task=\"\(second)\"] button[aria-label^=\"Move task\"]")
            try await page.waitFor("document.querySelector('.toast')?.textContent.includes('is next in its queue')", "the task moved")
            _ = try await page.evaluate("[...document.querySelectorAll('.page-head button')].find((b) => b.textContent === 'Resume queue').click()")
            try await page.waitFor("document.querySelector('p.notice[role=status]')?.hidden === true", "the notice gone")
            for id in [first, second] { #expect(try await server.waitForTask(id)["status"] == "succeeded") }
        }
    }

    @Test func galleryShowsRecentImagesAndSendsOneToThePlayground() async throws {
        let server = try await ServerProcess(config: Self.config, models: Self.models)
        defer { server.destroy() }
        let prompts = ["a red fox", "a blue whale", "a green parrot", "a yellow taxi", "a purple mountain", "an orange sunset"]
        for (index, prompt) in prompts.enumerated() {
            _ = try await generate(server, [
                "stable_diffusion_model": index % 2 == 0 ? "demo" : "landscape-v2", "prompt": .string(prompt), "steps": 6,
                "width": 192, "height": 192, "seed": .integer(Int64(100 + index)),
            ])
        }
        try await withPage(server) { page in
            try await page.open(server.baseURL + "/#gallery")
            try await page.waitFor("document.querySelectorAll('.gallery .thumb img').length === 6 && [...document.querySelectorAll('.gallery .thumb img')].every((img) => img.complete && img.naturalWidth > 0)", "six thumbnails")
            #expect(try await page.evaluate("document.querySelector('.gallery .thumb span').textContent") == "an orange sunset", "newest first")
            try await page.screenshot(Self.screenshots + "/gallery.png")

            try await page.click(".gallery .thumb:nth-child(2)")
            try await page.waitFor("document.querySelector('dialog[open] img')?.naturalWidth === 192", "the full image")
            #expect(try await page.evaluate("document.querySelector('dialog[open]').innerText.includes('a purple mountain')") == true)
            try await page.screenshot(Self.screenshots + "/gallery-image.png")
            try await page.evaluate("document.querySelector('dialog[open]').dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowRight' }))")
            try await page.waitFor("document.querySelector('dialog[open]').innerText.includes('a yellow taxi')", "the next image")
            try await page.evaluate("[...document.querySelectorAll('dialog[open] button')].find((b) => b.textContent === 'Send to playground').click()")
            try await page.waitFor("location.hash === '#playground' && document.querySelector('[name=prompt]')?.value === 'a yellow taxi'", "the playground filled in")
            #expect(try await page.evaluate("document.querySelector('[name=seed]').value") == "103")
            #expect(try await page.evaluate("document.querySelector('[name=stable_diffusion_model]').value") == "landscape-v2.safetensors")
            #expect(try await page.evaluate("document.querySelector('[name=width]').value") == "192")
        }
    }

    @Test func usersPageAddsAUserWhoThenSignsIn() async throws {
        let server = try await ServerProcess(config: Self.config, models: Self.models)
        defer { server.destroy() }
        try await withPage(server) { page in
            try await page.open(server.baseURL + "/#users")
            try await page.waitFor("document.querySelector('table.users tbody td')?.textContent.includes('No users')", "the empty list")
            try await page.fill("form [name=userName]", "dora")
            try await page.fill("form [name=password]", "a long password")
            try await page.click("form button[type=submit]")
            try await page.waitFor("document.querySelector('tr[data-user=\"dora\"]')", "the new user listed")
        }
        let (status, answer) = try await server.json(.POST, "/login", ["userName": "dora", "password": "a long password"])
        #expect(status == 200 && answer["userName"] == "dora", "\(answer)")
    }

    @Test func usagePageChartsTheTasksThatRanAndSetsAQuota() async throws {
        let server = try await ServerProcess(config: Self.config, models: Self.models)
        defer { server.destroy() }
        for (prompt, images) in [("a kite", 1), ("two kites", 2)] {
            _ = try await generate(server, ["prompt": .string(prompt), "steps": 4, "width": 64, "height": 64, "batch_size": .integer(Int64(images))])
        }
        let today = ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
        try await withPage(server) { page in
            try await page.open(server.baseURL + "/#usage")
            // Today's bar in the chart, for the three images made; the table by user.
            try await page.waitFor("document.querySelector('svg.usage-chart rect.bar-day[data-day=\"\(today)\"]')?.dataset.images === '3'", "today's bar")
            #expect(try await page.evaluate("document.querySelector('svg.usage-chart rect.bar-day').getAttribute('height') > 0") == true)
            #expect(try await page.evaluate("document.querySelector('table.usage tbody tr[data-row=default]').textContent.includes('3')") == true)
            try await page.fill("select[name=groupBy]", "model")
            try await page.click("form[role=search] button[type=submit]")
            try await page.waitFor("document.querySelector('table.usage tbody tr[data-row=\"demo.safetensors\"]')", "the rows by model")
            // A quota set through the form is listed, with what its user used today.
            try await page.fill("form.quota-form [name=name]", "default")
            try await page.fill("form.quota-form [name=imagesPerDay]", "10")
            try await page.click("form.quota-form button[type=submit]")
            try await page.waitFor("document.querySelector('tr[data-quota=\"user/default\"]')?.textContent.includes('3 of 10')", "the quota listed")
            try await page.screenshot(Self.screenshots + "/usage.png")
        }
        let (_, listed) = try await server.json(.GET, "/admin/quotas")
        #expect(listed["quotas"]?[0]?["name"] == "default" && listed["quotas"]?[0]?["quota"] == ["imagesPerDay": 10], "\(listed)")
    }

    @Test func modelsPageEditsThePromptStylesA1111Lists() async throws {
        let server = try await ServerProcess(config: Self.config, models: Self.models)
        defer { server.destroy() }
        try await withPage(server) { page in
            try await page.open(server.baseURL + "/#models")
            try await page.waitFor("document.querySelector('form:has(table.styles) button[type=button]')?.disabled === false", "the styles loaded")
            try await page.click("form:has(table.styles) button[type=button]")
            try await page.fill("table.styles tbody tr:last-child [name=name]", "Cinematic, \"wide\"")
            try await page.fill("table.styles tbody tr:last-child [name=prompt]", "cinematic still of {prompt}, 35mm")
            try await page.click("form:has(table.styles) button[type=submit]")
            try await page.waitFor("document.querySelector('table.styles tr[data-style]')?.dataset.style === 'Cinematic, \"wide\"'", "the saved style")
        }
        let (status, styles) = try await server.json(.GET, "/sdapi/v1/prompt-styles")
        #expect(status == 200 && styles == [["name": "Cinematic, \"wide\"", "prompt": "cinematic still of {prompt}, 35mm", "negative_prompt": nil]])
        // Kept in A1111's own file format.
        let csv = try String(contentsOfFile: server.dataDirectory + "/styles.csv", encoding: .utf8)
        #expect(csv == "name,prompt,negative_prompt\n\"Cinematic, \"\"wide\"\"\",\"cinematic still of {prompt}, 35mm\",\"\"\n")
        let (duplicate, _) = try await server.json(.PUT, "/admin/styles", [["name": "a"], ["name": "a"]])
        #expect(duplicate == 400)
    }

    @Test func modelsPageUploadsReplacesDeletesAndRegistersModels() async throws {
        let server = try await ServerProcess(config: Self.config, models: Self.models)
        defer { server.destroy() }
        _ = try await generate(server, ["prompt": "warm up", "steps": 4, "width": 64, "height": 64])
        let folder = server.dataDirectory + "/elsewhere"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let upload = folder + "/fresh-model.safetensors"
        let file = ModelManagementTests.safetensors(bytes: 8 << 20)
        try file.write(to: URL(fileURLWithPath: upload))
        try await withPage(server) { page in
            try await page.open(server.baseURL + "/#models")
            try await page.waitFor("document.querySelectorAll('tr[data-model]').length === 2", "both checkpoints")
            try await page.waitFor("document.querySelector('tr[data-model=\"demo.safetensors\"] .badge')?.textContent === 'loaded'", "the demo checkpoint loaded")
            try await page.waitFor("/ago|just now/.test(document.querySelector('tr[data-model=\"demo.safetensors\"]').innerText)", "its last use")
            let hash = try await page.evaluate("document.querySelector('tr[data-model=\"demo.safetensors\"] td:nth-child(4)').textContent")
            let (_, models) = try await server.json(.GET, "/models")
            #expect(hash == models.arrayValue?.first { $0["name"] == "demo.safetensors" }?["shortHash"])

            // Other types are listed in their own tables.
            for (type, name) in [("sdVae", "vae-ft-mse.safetensors"), ("lora", "watercolor-style.safetensors")] {
                let (status, _) = try await server.request(.PUT, "/admin/models/\(type)/\(name)", body: ModelManagementTests.safetensors(bytes: 300_000))
                #expect(status == 201)
            }
            try await page.waitFor("[...document.querySelectorAll('caption')].map((c) => c.textContent).join() === 'Checkpoints (2),VAEs (1),LoRAs (1)'", "a table per type")

            // Upload through the file picker at 4 MiB/s (the browser throttles it), so the progress shows.
            _ = try await page.send("Network.enable")
            _ = try await page.send("Network.emulateNetworkConditions", [
                "offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": .integer(4 << 20),
            ])
            try await page.evaluate("""
                window.figures = [];
                new MutationObserver(() => document.querySelectorAll('.upload .figures').forEach((f) => window.figures.push(f.textContent)))
                  .observe(document.querySelector('.uploads'), { subtree: true, childList: true, characterData: true });
                """)
            try await page.setFiles("input[type=file]", [upload])
            try await page.waitFor("document.querySelector('.upload progress')?.value > 3 << 20", "the upload under way")
            try await page.screenshot(Self.screenshots + "/models.png")
            try await page.waitFor("document.querySelector('.upload')?.dataset.state === 'done'", timeout: .seconds(30), "the upload done")
            let figures = try await page.evaluate("window.figures").arrayValue?.compactMap(\.stringValue) ?? []
            #expect(figures.contains { $0.range(of: #"^\d+(\.\d)? MiB of 8\.0 MiB \([1-9]\d?%\) · \d+(\.\d)? MiB/s · \d+(\.\d)? s left$"#, options: .regularExpression) != nil }, "\(figures)")
            _ = try await page.send("Network.emulateNetworkConditions", ["offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1])
            let row = "tr[data-model=\"fresh-model.safetensors\"]"
            try await page.waitFor("document.querySelector('\(row) .badge')?.textContent === 'unloaded'", "the uploaded model hashed")
            let sha256 = try Checkpoint.sha256(ofFileAt: upload)
            let (_, listed) = try await server.json(.GET, "/models")
            let record = listed.arrayValue?.first { $0["name"] == "fresh-model.safetensors" }
            #expect(record?["etag"] == .string(sha256))
            #expect(record?["size"] == .integer(Int64(file.count)))
            #expect(try await page.evaluate("document.querySelector('\(row) td:nth-child(4)').textContent") == .string(String(sha256.prefix(10))))
            try await page.click("button[aria-label=\"Dismiss fresh-model.safetensors\"]")

            // The same name again: refused until replaced.
            try await page.setFiles("input[type=file]", [upload])
            try await page.waitFor("document.querySelector('.upload')?.dataset.state === 'exists'", "the name taken")
            try await page.evaluate("[...document.querySelectorAll('.upload button')].find((b) => b.textContent === 'Replace it').click()")
            try await page.waitFor("document.querySelector('.upload')?.dataset.state === 'done'", "the model replaced")

            // Delete, confirmed in a dialog.
            try await page.click("button[aria-label=\"Delete fresh-model.safetensors\"]")
            try await page.waitFor("document.querySelector('dialog[open]')?.innerText.includes('Delete fresh-model.safetensors?')", "the confirmation")
            try await page.click("dialog[open] button[value=confirm]")
            try await page.waitFor("!document.querySelector('\(row)')", "the row gone")
            #expect(try await server.json(.GET, "/models").1.arrayValue?.contains { $0["name"] == "fresh-model.safetensors" } == false)

            // Register the file where it is.
            try await page.fill("form input[name=path]", upload)
            try await page.click("form:has(input[name=path]) button[type=submit]")
            try await page.waitFor("document.querySelector('\(row) .badge')?.textContent === 'unloaded'", "the registered model hashed")
            #expect(FileManager.default.fileExists(atPath: upload), "registered in place, not moved")
            // A path that is not a model is refused with the server's reason.
            try await page.fill("form input[name=path]", server.dataDirectory + "/server.log")
            try await page.click("form:has(input[name=path]) button[type=submit]")
            try await page.waitFor("document.querySelector('form p.error-text[role=alert]:not([hidden])')?.textContent.includes('must end in')", "the refusal")
        }
    }

    @Test func modelsPageInstallsAModelFromALinkAndShowsItsProgress() async throws {
        let site = try await ModelSite()
        defer { site.stop() }
        try site.add("from-link.safetensors", ModelInstallTests.file)
        let server = try await ServerProcess(config: Self.config + """

            models:
              allowPrivateNetworks: true
              caCertificateFile: \(site.certificate)
            """, models: Self.models)
        defer { server.destroy() }
        try await withPage(server) { page in
            try await page.open(server.baseURL + "/#models")
            try await page.waitFor("document.querySelectorAll('tr[data-model]').length === 2", "both checkpoints")
            try await page.evaluate("""
                window.figures = [];
                new MutationObserver(() => document.querySelectorAll('li.install .figures').forEach((f) => window.figures.push(f.textContent)))
                  .observe(document.querySelector('ul.installs'), { subtree: true, childList: true, characterData: true });
                """)
            // 2 MiB at 512 KiB/s, so that the progress shows.
            try await page.fill("form input[name=url]", site.base + "/files/from-link.safetensors?rate=524288")
            try await page.click("form:has(input[name=url]) button[type=submit]")
            try await page.waitFor("document.querySelector('li.install')?.dataset.state === 'downloading' && document.querySelector('li.install progress').value > 0", "the download under way")
            try await page.screenshot(Self.screenshots + "/models-install.png")
            try await page.waitFor("document.querySelector('li.install')?.dataset.state === 'succeeded'", timeout: .seconds(30), "the install done")
            let figures = try await page.evaluate("window.figures").arrayValue?.compactMap(\.stringValue) ?? []
            #expect(figures.contains { $0.range(of: #"^\d+(\.\d)? (KiB|MiB) of 2\.0 MiB \(\d+%\) · \d+(\.\d)? (KiB|MiB)/s · \d+(\.\d)? (ms|s) left$"#, options: .regularExpression) != nil }, "\(figures)")
            #expect(figures.last == "Installed 2.0 MiB as checkpoint" || figures.contains { $0.hasPrefix("Installed 2.0 MiB") }, "\(figures)")
            try await page.waitFor("document.querySelector('tr[data-model=\"from-link.safetensors\"] .badge')?.textContent === 'unloaded'", "the model listed")
            try await page.click("button[aria-label=\"Dismiss from-link.safetensors\"]")
            try await page.waitFor("!document.querySelector('li.install')", "the install dismissed")
            // A bad link is refused with the server's reason.
            try await page.fill("form input[name=url]", "ftp://example.com/x.safetensors")
            try await page.click("form:has(input[name=url]) button[type=submit]")
            try await page.waitFor("document.querySelector('form:has(input[name=url]) p.error-text:not([hidden])')?.textContent.includes('only http(s) URLs')", "the refusal")
        }
        #expect(try await server.json(.GET, "/admin/models/installs").1["installs"]?.arrayValue?.isEmpty == true)
        #expect(FileManager.default.contents(atPath: server.dataDirectory + "/models/Stable-diffusion/from-link.safetensors") == ModelInstallTests.file)
    }

    /// With API keys required, the pages ask for one, keep it, and send it with every call (the browser
    /// watches each request's headers).
    @Test func pagesAskForTheAPIKeyAndSendItWithEveryCall() async throws {
        let server = try await ServerProcess(config: Self.config + "\nauth:\n  required: true\n", models: Self.models)
        defer { server.destroy() }
        let (made, output) = try await runSDBox(["keys", "add", "--data-dir", server.dataDirectory, "--user", "ops", "--role", "admin"])
        #expect(made == 0, "\(output)")
        let key = try #require(output.split(whereSeparator: \.isWhitespace).last.map(String.init))
        let calls = Mutex<[(path: String, authorized: Bool)]>([])
        try await withPage(server) { page in
            let browser = page.browser
            browser.onEvent { method, params, session in
                guard method == "Fetch.requestPaused", let id = params["requestId"] else { return }
                let path = URL(string: params["request"]?["url"]?.stringValue ?? "")?.path ?? ""
                let headers = params["request"]?["headers"]?.objectValue ?? [:]
                let authorized = headers.contains { $0.key.lowercased() == "authorization" && $0.value == .string("Bearer \(key)") }
                let api = !(path == "/" || path.hasPrefix("/web/") || path.hasPrefix("/objects/"))
                if api { calls.withLock { $0.append((path, authorized)) } }
                Task { _ = try? await browser.send("Fetch.continueRequest", ["requestId": id], session: session) }
            }
            _ = try await page.send("Fetch.enable", ["patterns": [["urlPattern": "*"]]])
            try await page.open(server.baseURL + "/#models")
            try await page.waitFor("document.getElementById('login').open", "the sign-in form")
            try await page.fill("#login input[name=key]", "wrong")
            try await page.click("#login button[type=submit]")
            try await page.waitFor("document.querySelector('#login [data-error]').textContent.includes('refused')", "the wrong key refused")
            #expect(try await page.evaluate("localStorage.getItem('sdbox.apiKey')") == .null, "a refused key is not kept")
            try await page.screenshot(Self.screenshots + "/sign-in.png")
            try await page.fill("#login input[name=key]", key)
            try await page.click("#login button[type=submit]")
            try await page.waitFor("!document.getElementById('login').open && document.querySelectorAll('tr[data-model]').length === 2", "the models once signed in")
            #expect(try await page.evaluate("localStorage.getItem('sdbox.apiKey')") == .string(key))
            #expect(try await page.evaluate("document.getElementById('sign-out').hidden") == false)

            // From now on every call carries the key: the pages, a generation, the curl shown for it.
            let signedIn = calls.withLock { $0.count }
            try await page.open(server.baseURL + "/#playground")
            try await page.waitFor("document.querySelector('[name=prompt]')", "the playground")
            try await page.fill("[name=width]", "64")
            try await page.fill("[name=height]", "64")
            try await page.click("form button[type=submit]")
            try await page.waitFor("document.querySelector('.images img')?.complete", "the image")
            let curl = try await page.evaluate("document.querySelector('pre.curl').textContent").stringValue ?? ""
            #expect(curl.contains(#"-H "Authorization: Bearer $SDBOX_API_KEY""#) && !curl.contains(key), "\(curl)")
            let later = calls.withLock { Array($0.dropFirst(signedIn)) }
            #expect(later.count >= 4 && later.allSatisfy(\.authorized), "\(later)")
            #expect(later.contains { $0.path == "/txt2img" })

            // Signing out forgets the key, and the next call asks again.
            try await page.click("#sign-out")
            try await page.waitFor("document.getElementById('login').open", "the sign-in form again")
            #expect(try await page.evaluate("localStorage.getItem('sdbox.apiKey')") == .null)
        }
    }
}
