import ArgumentParser
import Foundation
import ImageCodec
import ReferenceWorker
import Subprocess
import Synchronization
import SystemPackage

/// `sdbox-bench thumbnails`: makes JPEG thumbnails of a folder of PNGs with sdbox's thumbnailer (libpng,
/// a box filter, libjpeg-turbo) and, in the same run, with Python Pillow and ImageMagick's `mogrify`, and
/// prints images per second for each. Every tool reads the PNG files and writes JPEG files.
///
/// Without `--folder`, it first writes `--count` test pictures of `--size` pixels square (the reference
/// worker's renderer, with grain so that they compress like photographs).
struct ThumbnailBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thumbnails",
        abstract: "Thumbnails of a folder of PNGs: sdbox against Python Pillow and ImageMagick."
    )

    @Option(help: "A folder of PNG files (default: a new folder of generated pictures).")
    var folder: String?

    @Option(help: "Pictures to generate when no folder is given.")
    var count = 48

    @Option(help: "Side of the generated pictures, in pixels.")
    var size = 1024

    @Option(help: "Longest side of the thumbnails.")
    var side = 256

    @Option(help: "JPEG quality of the thumbnails.")
    var quality = 85

    @Option(help: "Threads for sdbox's parallel run and processes for Pillow's (default: the CPUs).")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Times each tool runs over the folder; the best run counts.")
    var rounds = 3

    @Option(help: "The Python with Pillow installed.")
    var python = "python3"

    @Option(help: "ImageMagick's mogrify.")
    var mogrify = "mogrify"

    func run() async throws {
        let workspace = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-bench-thumbnails-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        let source = folder ?? workspace + "/pictures"
        if folder == nil { try Self.generate(count: count, size: size, into: source) }
        let files = try FileManager.default.contentsOfDirectory(atPath: source).filter { $0.lowercased().hasSuffix(".png") }.sorted()
        guard !files.isEmpty else { throw ValidationError("\(source) holds no .png files") }
        let bytes = files.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: source + "/" + $1)[.size] as? Int) ?? 0) }
        print("sdbox-bench thumbnails: \(files.count) PNGs in \(source), \(bytes / files.count / 1024) KiB on average")
        print("thumbnails: JPEG, longest side \(side), quality \(quality); \(ProcessInfo.processInfo.activeProcessorCount) CPUs; best of \(rounds) rounds")
        print("")
        print(Row.header)
        let tools: [(name: String, run: (String) async throws -> Duration)] = [
            ("sdbox: libpng + box filter + libjpeg-turbo, 1 thread", { try await self.sdbox(files, from: source, to: $0, threads: 1) }),
            ("sdbox, \(threads) threads", { try await self.sdbox(files, from: source, to: $0, threads: threads) }),
            ("Pillow Image.thumbnail, 1 process", { try await self.pillow(from: source, to: $0, processes: 1) }),
            ("Pillow, \(threads) processes", { try await self.pillow(from: source, to: $0, processes: threads) }),
            ("ImageMagick mogrify -thumbnail (its own threads)", { try await self.imageMagick(from: source, to: $0) }),
        ]
        // Rounds go over all tools in turn, so that a change in the machine's load touches them alike.
        var results = [Result](repeating: Result(), count: tools.count)
        for _ in 0..<max(1, rounds) {
            for (index, tool) in tools.enumerated() where results[index].failure == nil {
                let output = workspace + "/out-\(index)"
                try? FileManager.default.removeItem(atPath: output)
                try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
                let cpuBefore = CPUTime.used()
                do {
                    let wall = try await tool.run(output)
                    results[index].record(wall: wall, cpu: CPUTime.used() - cpuBefore)
                } catch {
                    results[index].failure = "\(error)"
                }
            }
        }
        for (index, tool) in tools.enumerated() {
            print(Row(name: tool.name, images: files.count, result: results[index], output: workspace + "/out-\(index)").text)
        }
    }

    // MARK: The tools

    /// sdbox's thumbnailer over the files, on `threads` threads pulling from one list.
    func sdbox(_ files: [String], from source: String, to output: String, threads: Int) async throws -> Duration {
        let next = Counter()
        let (side, quality) = (self.side, self.quality)
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<max(1, threads) {
                group.addTask {
                    while true {
                        let index = next.take()
                        guard index < files.count else { return }
                        let png = try Data(contentsOf: URL(fileURLWithPath: source + "/" + files[index]))
                        let thumbnail = try Thumbnail(of: png, longestSide: side, quality: quality)
                        try thumbnail.jpeg.write(to: URL(fileURLWithPath: output + "/" + Self.jpegName(files[index])))
                    }
                }
            }
            try await group.waitForAll()
        }
        return started.duration(to: .now)
    }

    /// Pillow's `Image.thumbnail` (its defaults: draft mode, reducing gap 2, bicubic) in `processes`
    /// processes; the time is measured inside Python, so the interpreter's start is not counted.
    func pillow(from source: String, to output: String, processes: Int) async throws -> Duration {
        let script = """
            import os, sys, time
            from multiprocessing import Pool
            from PIL import Image
            source, output, side, quality, processes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
            def thumbnail(name):
                with Image.open(os.path.join(source, name)) as image:
                    image = image.convert("RGB")
                    image.thumbnail((side, side))
                    image.save(os.path.join(output, name[:-4] + ".jpg"), "JPEG", quality=quality)
            if __name__ == "__main__":
                names = sorted(n for n in os.listdir(source) if n.lower().endswith(".png"))
                if processes > 1:
                    with Pool(processes) as pool:
                        pool.map(thumbnail, names[:processes])
                        started = time.perf_counter()
                        pool.map(thumbnail, names, chunksize=1)
                else:
                    started = time.perf_counter()
                    for name in names: thumbnail(name)
                print(time.perf_counter() - started)
            """
        let scriptPath = (output as NSString).deletingLastPathComponent + "/pillow_thumbnails.py"
        try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        let result = try await Subprocess.run(
            Self.executable(python), arguments: [scriptPath, source, output, "\(side)", "\(quality)", "\(processes)"],
            output: .string(limit: 4096), error: .string(limit: 65536)
        )
        guard result.terminationStatus.isSuccess, let seconds = Double(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ToolFailure("\(python) with Pillow failed (pip install pillow): \(result.standardError.suffix(300))")
        }
        return .milliseconds(Int64(seconds * 1000))
    }

    /// ImageMagick's `mogrify -thumbnail` over the folder in one process, timed from outside.
    func imageMagick(from source: String, to output: String) async throws -> Duration {
        let files = try FileManager.default.contentsOfDirectory(atPath: source).filter { $0.lowercased().hasSuffix(".png") }.map { source + "/" + $0 }
        let started = ContinuousClock.now
        let result = try await Subprocess.run(
            Self.executable(mogrify), arguments: Arguments(["-path", output, "-format", "jpg", "-thumbnail", "\(side)x\(side)", "-quality", "\(quality)"] + files),
            output: .discarded, error: .string(limit: 65536)
        )
        let time = started.duration(to: .now)
        guard result.terminationStatus.isSuccess else {
            throw ToolFailure("\(mogrify) failed (apt install imagemagick): \(result.standardError.suffix(300))")
        }
        return time
    }

    // MARK: Helpers

    /// A program by path when the name has a slash, else looked up in `PATH`.
    static func executable(_ name: String) -> Executable {
        name.contains("/") ? .path(FilePath(name)) : .name(name)
    }

    static func jpegName(_ png: String) -> String { (png as NSString).deletingPathExtension + ".jpg" }

    /// Writes `count` PNG test pictures of `size` x `size`, with grain like a photograph's.
    static func generate(count: Int, size: Int, into folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        DispatchQueue.concurrentPerform(iterations: count) { index in
            let picture = TestImageRenderer.render(prompt: "picture \(index)", seed: UInt64(index), width: size, height: size, steps: 10, completedSteps: 7)
            let path = folder + "/" + String(format: "picture-%04d.png", index)
            try? PNGCodec.encode(picture).write(to: URL(fileURLWithPath: path))
        }
    }
}

extension ThumbnailBenchmark {
    /// Hands out 0, 1, 2... to the threads of a run.
    final class Counter: Sendable {
        let next = Mutex(0)

        func take() -> Int {
            next.withLock { value in
                defer { value += 1 }
                return value
            }
        }
    }

    /// The best wall time and CPU time of a tool over the rounds.
    struct Result {
        var wall: Duration?
        var cpu: Duration?
        var failure: String?

        mutating func record(wall: Duration, cpu: Duration) {
            self.wall = min(self.wall ?? wall, wall)
            self.cpu = min(self.cpu ?? cpu, cpu)
        }
    }

    /// CPU time used by this process and its finished children (user and system).
    enum CPUTime {
        static func used() -> Duration {
            var own = rusage()
            var children = rusage()
            getrusage(Int32(RUSAGE_SELF.rawValue), &own)
            getrusage(Int32(RUSAGE_CHILDREN.rawValue), &children)
            let microseconds = [own.ru_utime, own.ru_stime, children.ru_utime, children.ru_stime]
                .reduce(Int64(0)) { $0 + Int64($1.tv_sec) * 1_000_000 + Int64($1.tv_usec) }
            return .microseconds(microseconds)
        }
    }

    /// A line of the results table.
    struct Row {
        static let header = "tool".padding(toLength: 52, withPad: " ", startingAt: 0) + "images/s   ms/image   CPU ms/image   JPEG KiB"
        let text: String

        init(name: String, images: Int, result: Result, output: String) {
            let label = name.padding(toLength: 52, withPad: " ", startingAt: 0)
            guard let wall = result.wall, let cpu = result.cpu, result.failure == nil else {
                text = label + "not run: " + (result.failure ?? "no result")
                return
            }
            let jpegs = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
            let bytes = jpegs.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: output + "/" + $1)[.size] as? Int) ?? 0) }
            let average = jpegs.isEmpty ? 0 : Double(bytes) / Double(jpegs.count) / 1024
            func seconds(_ time: Duration) -> Double { Double(time.components.seconds) + Double(time.components.attoseconds) / 1e18 }
            text = label + String(
                format: "%8.1f   %8.2f   %12.2f   %8.1f", Double(images) / seconds(wall), seconds(wall) * 1000 / Double(images),
                seconds(cpu) * 1000 / Double(images), average
            )
        }
    }

    /// A tool that could not run.
    struct ToolFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
