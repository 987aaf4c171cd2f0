#if canImport(Glibc)
import Glibc
#endif
@testable import Scheduler
import Testing

/// A started worker's port is told apart from one another process took first, by who listens on it.
@Suite struct PortListenerTests {
    /// A socket listening on a port of 127.0.0.1 the kernel chose, held by this test process; or, not
    /// listening, only bound there, which keeps other processes from listening on that port of 127.0.0.1
    /// or of any address while the test runs.
    final class Listener {
        let fd: Int32
        let port: Int

        init?(host: String = "127.0.0.1", port: Int = 0, listens: Bool = true) {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return nil }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr(host)
            address.sin_port = UInt16(port).bigEndian
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && (!listens || listen(fd, 1) == 0) && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else {
                close(fd)
                return nil
            }
            self.fd = fd
            self.port = Int(UInt16(bigEndian: address.sin_port))
        }

        deinit { close(fd) }
    }

    @Test func theWorkerItsDescendantsAndAStranger() async throws {
        let listener = try #require(Listener())
        #expect(await PortListener.of(port: listener.port, root: getpid()) == .worker)
        // This process descends from its parent: a worker started through a shell or launcher is its own.
        #expect(await PortListener.of(port: listener.port, root: getppid()) == .worker)
        // A worker whose process tree does not hold the listener: this process took its port.
        #expect(await PortListener.of(port: listener.port, root: Int32.max) == .stranger(pid: getpid()))
    }

    /// Among many sockets: Foundation's readers stop after the first 4 KiB of `/proc/net/tcp`.
    @Test func aListenerIsFoundAmongManySockets() async throws {
        let others = (0..<200).compactMap { _ in Listener() }
        let listener = try #require(Listener())
        #expect(others.count == 200)
        #expect(await PortListener.of(port: listener.port, root: getpid()) == .worker)
    }

    /// A listener on another address than 127.0.0.1 (or any) does not get a call to 127.0.0.1: not the worker's port.
    @Test func aListenerOnAnotherAddressDoesNotCount() async throws {
        let reserved = try #require(Listener(listens: false))
        let elsewhere = try #require(Listener(host: "127.0.0.2", port: reserved.port))
        #expect(elsewhere.port == reserved.port)
        #expect(await PortListener.of(port: reserved.port, root: Int32.max) == .unknown)
    }

    @Test func aPortNobodyListensOnIsUnknown() async throws {
        let reserved = try #require(Listener(listens: false))
        #expect(await PortListener.of(port: reserved.port, root: getpid()) == .unknown)
    }
}
