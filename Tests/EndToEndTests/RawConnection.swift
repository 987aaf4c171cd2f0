import Foundation

/// A TCP connection to a local server driven byte by byte, for what an HTTP client library will not send:
/// a head or body trickled in, a method HTTP does not know, a head announcing a body that never comes.
final class RawConnection {
    let descriptor: Int32

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(descriptor)
            throw TestFailure("cannot connect to port \(port): errno \(errno)")
        }
    }

    deinit { close(descriptor) }

    /// Sends `text`; false when the server has closed the connection.
    @discardableResult
    func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Foundation.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Sends `pieces` one by one, `interval` apart, for as long as the server keeps the connection open;
    /// true when the server closed it before the last piece.
    func trickle(_ pieces: [String], every interval: Duration) async throws -> Bool {
        for piece in pieces {
            if !send(piece) || isClosedByServer() { return true }
            try await Task.sleep(for: interval)
        }
        return isClosedByServer()
    }

    /// Whether the server has closed its side (a read would end), without waiting.
    func isClosedByServer() -> Bool {
        var byte: UInt8 = 0
        let received = recv(descriptor, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return received == 0 || (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }

    /// What the server sends until it closes the connection; nil if it still has not after `seconds`.
    func readUntilClosed(seconds: Int = 30) -> Data? {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let received = recv(descriptor, &buffer, buffer.count, 0)
            if received > 0 {
                data.append(contentsOf: buffer[0..<received])
            } else if received == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) {
                return data
            } else {
                return nil
            }
        }
    }

    /// The first bytes the server sends, waiting up to `seconds`.
    func readSome(seconds: Int = 30) -> String {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        let received = recv(descriptor, &buffer, buffer.count, 0)
        return received > 0 ? String(decoding: buffer[0..<received], as: UTF8.self) : ""
    }
}
