import Appliance
import ArgumentParser
import Foundation
import SDBoxCore
import SDBoxServer

/// `sdbox models`: model files.
struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Model files.",
        subcommands: [MakeTestCheckpoint.self]
    )
}

/// `sdbox models make-test-checkpoint`: a random-weight checkpoint for the sdcpp worker, written by the
/// worker's own script (`workers/sdcpp/sdcpp_worker/test_checkpoint.py`) with the Python of its venv.
struct MakeTestCheckpoint: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a random-weight checkpoint that the sdcpp worker runs. Its images are NOISE, not pictures.",
        discussion: """
            The checkpoint (an SDXS-style tiny UNet, CLIP-L and TAESD, about 880 MB, written in about 10 s) runs \
            real diffusion in stable-diffusion.cpp, for tests and demos without a download, but its weights are \
            random: every image is coloured noise. The same seed writes the same file. With --upscaler it writes \
            a small ESRGAN x4 that upscales about like nearest-neighbour instead. Needs the sdcpp worker \
            installed (workers/sdcpp/install.sh); sdbox sees the file after POST /sdapi/v1/refresh-checkpoints \
            or a restart.
            """
    )

    @Argument(help: "File to write (default: <data-dir>/models/Stable-diffusion/sdxs-noise.safetensors, or models/ESRGAN/esrgan-noise-x4.safetensors with --upscaler).")
    var output: String?

    @Option(help: "The sdcpp worker's venv (default: <data-dir>/sdcpp-venv).")
    var venv: String?

    @Option(help: "Seed of the random weights.")
    var seed: Int = 0

    @Flag(help: "Write the test ESRGAN upscaler instead of a checkpoint.")
    var upscaler = false

    @Option(help: "sdbox's data folder (default: $SDBOX_DATA_DIR, else ./sdbox-data).")
    var dataDir: String?

    func run() throws {
        let folder = dataDir ?? ProcessInfo.processInfo.environment["SDBOX_DATA_DIR"] ?? ServerConfiguration().dataDirectory
        let data = URL(fileURLWithPath: folder).standardizedFileURL.path
        let tool = (venv ?? data + "/sdcpp-venv") + "/bin/sdbox-make-test-checkpoint"
        guard FileManager.default.isExecutableFile(atPath: tool) else {
            throw ValidationError("\(tool) not found: install the sdcpp worker first (workers/sdcpp/install.sh \(venv ?? data + "/sdcpp-venv"))")
        }
        let file = output ?? (upscaler ? ModelType.upscaler.path(of: "esrgan-noise-x4.safetensors", in: data + "/models") : ModelType.stableDiffusion.path(of: "sdxs-noise.safetensors", in: data + "/models"))
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = [file, "--seed", "\(seed)"] + (upscaler ? ["--upscaler"] : [])
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ExitCode(process.terminationStatus) }
    }
}
