import Foundation
@testable import Appliance
@testable import SDBoxServer
import Testing

/// Where `sdbox serve` finds its web pages.
@Suite struct WebRootTests {
    /// Makes `folder/web/index.html` (and `folder/Package.swift` when `package`), answering the web folder.
    func pages(in folder: String, package: Bool = false) throws -> String {
        try FileManager.default.createDirectory(atPath: folder + "/web", withIntermediateDirectories: true)
        try Data("<!doctype html>".utf8).write(to: URL(fileURLWithPath: folder + "/web/index.html"))
        if package { try Data("// swift-tools-version: 6.2".utf8).write(to: URL(fileURLWithPath: folder + "/Package.swift")) }
        return folder + "/web"
    }

    @Test func aConfiguredRootMustHoldTheIndex() throws {
        let directory = try TemporaryDirectory()
        let web = try pages(in: directory.path)
        #expect(try WebRoutes.locateRoot(configured: web, executablePath: "/usr/bin/sdbox") == web)
        // Relative to the current directory.
        #expect(try WebRoutes.locateRoot(configured: "web", executablePath: "/usr/bin/sdbox", currentDirectory: directory.path) == web)
        #expect(throws: ConfigurationError.self) {
            try WebRoutes.locateRoot(configured: directory.path + "/missing", executablePath: "/usr/bin/sdbox")
        }
    }

    @Test(.enabled(if: !FileManager.default.fileExists(atPath: WebRoutes.packagedRoot + "/index.html"), "the installed package's pages come first"))
    func findsTheSourcePackageOfTheExecutable() throws {
        let directory = try TemporaryDirectory()
        let web = try pages(in: directory.path, package: true)
        let binary = directory.path + "/.build/x86_64-unknown-linux-gnu/debug/sdbox"
        #expect(try WebRoutes.locateRoot(configured: nil, executablePath: binary, currentDirectory: "/") == web)
        // Elsewhere, the current directory's web/; else none.
        let other = try TemporaryDirectory()
        let local = try pages(in: other.path)
        #expect(try WebRoutes.locateRoot(configured: nil, executablePath: "/opt/sdbox/bin/sdbox", currentDirectory: other.path) == local)
        #expect(try WebRoutes.locateRoot(configured: nil, executablePath: "/opt/sdbox/bin/sdbox", currentDirectory: "/") == nil)
    }
}
