import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDBoxCore
import Subprocess
import SystemPackage

/// `sdbox-bench upload`: uploads a large model file to a real sdbox and prints its throughput beside a
/// plain `dd` of the same file to the same disk, and the server's memory during the upload.
struct UploadBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upload",
        abstract: "Streamed model upload: throughput against dd, and the server's resident memory."
    )

    @Option(help: "Size of the uploaded file in MiB.")
    var sizeMib = 4096

    @Option(help: "Folder on the disk to measure (the sdbox data folder goes there).")
    var directory = "./sdbox-bench-upload"

    @Option(help: "The sdbox binary (default: beside this one).")
    var sdbox: String?

    func run() async throws {
        let binary = sdbox ?? SchedulingBenchmark.siblingBinary()
        let root = URL(fileURLWithPath: directory).standardizedFileURL.path + "/run-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/data", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let size = Int64(sizeMib) << 20
        let source = root + "/source.safetensors"
        print("sdbox-bench upload: \(sizeMib) MiB of random bytes as a .safetensors file, in \(root)")
        try Self.writeRandomSafetensors(path: source, bytes: size)
        // Both runs start with nothing dirty in the page cache, so neither pays for the other's writeback.
        try await Self.sync()
        let ddSeconds = try await Self.timeDD(from: source, to: root + "/dd-copy")
        try? FileManager.default.removeItem(atPath: root + "/dd-copy")
        try await Self.sync()

        guard let port = FreePort.allocate() else { throw BenchmarkError("no free port") }
        let server = BenchProcess(
            [binary, "serve", "--port", "\(port)", "--data-dir", root + "/data", "--log-level", "warning"], log: root + "/server.log"
        )
        var configuration = HTTPClient.Configuration()
        configuration.timeout.read = .seconds(3600)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            try await http.waitUntilAnswering(port: port, path: "/healthz", timeout: .seconds(30))
            guard let pid = server.processID else { throw BenchmarkError("cannot find the server process") }
            let before = Self.residentKiB(pid: pid)
            let sampler = Task {
                var peak = 0
                while !Task.isCancelled {
                    peak = max(peak, Self.residentKiB(pid: pid))
                    try? await Task.sleep(for: .milliseconds(20))
                }
                return peak
            }
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/admin/models/stableDiffusion/big.safetensors")
            request.method = .PUT
            request.body = .stream(FileChunks(path: source), length: .known(Int64(size) + Self.headerBytes(size: size)))
            let start = ContinuousClock.now
            let response = try await http.execute(request, timeout: .seconds(3600))
            let answer = try await response.body.collect(upTo: 1 << 20)
            let uploadSeconds = start.duration(to: .now).seconds
            sampler.cancel()
            let peak = await sampler.value
            guard response.status == .created else {
                throw BenchmarkError("upload answered \(response.status.code): \(String(buffer: answer))")
            }
            let mib = Double(size) / Double(1 << 20)
            print(String(format: "dd (bs=4M, conv=fsync):  %7.1f MiB/s  (%.2f s)", mib / ddSeconds, ddSeconds))
            print(String(format: "sdbox PUT upload:        %7.1f MiB/s  (%.2f s)  = %.0f%% of dd, sha256 computed on the way", mib / uploadSeconds, uploadSeconds, 100 * ddSeconds / uploadSeconds))
            print(String(format: "server RSS: %.1f MiB before, %.1f MiB peak, growth %.1f MiB", Double(before) / 1024, Double(peak) / 1024, Double(max(0, peak - before)) / 1024))
        } catch {
            try? await http.shutdown()
            await server.stop()
            throw error
        }
        try await http.shutdown()
        await server.stop()
    }

    static func headerBytes(size: Int64) -> Int64 { Int64(8 + header(size: size).count) }

    static func header(size: Int64) -> Data {
        Data(#"{"w":{"dtype":"U8","shape":[\#(size)],"data_offsets":[0,\#(size)]}}"#.utf8)
    }

    /// A valid safetensors file: one U8 tensor of `bytes` random bytes.
    static func writeRandomSafetensors(path: String, bytes: Int64) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil), let out = FileHandle(forWritingAtPath: path),
            let random = FileHandle(forReadingAtPath: "/dev/urandom")
        else { throw BenchmarkError("cannot write \(path)") }
        defer {
            try? out.close()
            try? random.close()
        }
        let header = header(size: bytes)
        var prefix = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { prefix.append(contentsOf: $0) }
        try out.write(contentsOf: prefix + header)
        var left = bytes
        while left > 0 {
            let chunk = try random.read(upToCount: Int(min(left, 4 << 20))) ?? Data()
            try out.write(contentsOf: chunk)
            left -= Int64(chunk.count)
        }
    }

    static func timeDD(from source: String, to destination: String) async throws -> Double {
        let start = ContinuousClock.now
        let result = try await Subprocess.run(
            .path(FilePath("/bin/dd")), arguments: ["if=\(source)", "of=\(destination)", "bs=4M", "conv=fsync", "status=none"],
            output: .discarded
        )
        guard result.terminationStatus.isSuccess else { throw BenchmarkError("dd failed: \(result.terminationStatus)") }
        return start.duration(to: .now).seconds
    }

    static func sync() async throws {
        _ = try await Subprocess.run(.path(FilePath("/bin/sync")), output: .discarded)
    }

    /// VmRSS of a process, in KiB.
    static func residentKiB(pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
}

/// A file read lazily in 1 MiB chunks, as an upload body.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let path: String

    struct AsyncIterator: AsyncIteratorProtocol {
        let handle: FileHandle?

        mutating func next() async throws -> ByteBuffer? {
            guard let chunk = try handle?.read(upToCount: 1 << 20), !chunk.isEmpty else {
                try handle?.close()
                return nil
            }
            return ByteBuffer(bytes: chunk)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(handle: FileHandle(forReadingAtPath: path)) }
}
