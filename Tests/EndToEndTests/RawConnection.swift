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
    /// The socket is polled, never waited on, so no thread of the tests' async code is held.
    func readUntilClosed(seconds: Int = 30) async -> Data? {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var data = Data()
        while ContinuousClock.now < deadline {
            switch receive() {
            case .bytes(let bytes): data.append(contentsOf: bytes)
            case .closed: return data
            case .nothingYet: try? await Task.sleep(for: .milliseconds(10))
            }
        }
        return nil
    }

    /// The first bytes the server sends, waiting up to `seconds`; empty if it sends none.
    func readSome(seconds: Int = 30) async -> String {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            switch receive() {
            case .bytes(let bytes): return String(decoding: bytes, as: UTF8.self)
            case .closed: return ""
            case .nothingYet: try? await Task.sleep(for: .milliseconds(10))
            }
        }
        return ""
    }

    private enum Received { case bytes([UInt8]), closed, nothingYet }

    private func receive() -> Received {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let received = recv(descriptor, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        if received > 0 { return .bytes(Array(buffer[0..<received])) }
        if received < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return .nothingYet }
        return .closed
    }
}
