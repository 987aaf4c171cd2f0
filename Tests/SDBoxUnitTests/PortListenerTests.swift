#if canImport(Glibc)
import Glibc
#endif
@testable import Scheduler
import Testing

/// A started worker's port is told apart from one another process took first, by who listens on it.
@Suite struct PortListenerTests {
    /// A socket listening on a port of 127.0.0.1 the kernel chose, held by this test process.
    final class Listener {
        let fd: Int32
        let port: Int

        init?() {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return nil }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else {
                close(fd)
                return nil
            }
            self.fd = fd
            port = Int(UInt16(bigEndian: address.sin_port))
        }

        deinit { close(fd) }
    }

    @Test func theWorkerItsDescendantsAndAStranger() throws {
        let listener = try #require(Listener())
        #expect(PortListener.of(port: listener.port, root: getpid()) == .worker)
        // This process descends from its parent: a worker started through a shell or launcher is its own.
        #expect(PortListener.of(port: listener.port, root: getppid()) == .worker)
        // A worker whose process tree does not hold the listener: this process took its port.
        #expect(PortListener.of(port: listener.port, root: Int32.max) == .stranger(pid: getpid()))
    }

    @Test func aPortNobodyListensOnIsUnknown() throws {
        let port = try #require(Listener()).port
        #expect(PortListener.of(port: port, root: getpid()) == .unknown)
    }
}
