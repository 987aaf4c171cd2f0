import Foundation
import NIOPosix

/// Keeps webhooks out of the box's own network. On a shared box a user must not make sdbox POST to its
/// loopback (where workers answer without a key) or to the private network behind it, so unless
/// `webhooks.allowPrivateNetworks` is on, a callback whose host is, or resolves to, a loopback, private,
/// link-local, unique-local, shared (CGNAT), unspecified, multicast or reserved address is refused: with
/// 400 when the task is submitted, and again (the name may resolve differently by then) before each POST.
enum WebhookTarget {
    /// Why `url`'s host may not receive webhooks (it names the address and its kind), or nil when it may.
    /// A host that does not resolve is left to the POST, which fails and is retried.
    static func refusal(of url: String, threadPool: NIOThreadPool = .singleton) async -> String? {
        guard var host = URLComponents(string: url)?.host, !host.isEmpty else { return nil }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let name = host
        let addresses = (try? await threadPool.runIfActive { resolve(name) }) ?? []
        for address in addresses {
            if let kind = nonPublicKind(of: address) {
                return address == host
                    ? "\(host) is a \(kind) address; webhooks go only to public addresses unless webhooks.allowPrivateNetworks is on"
                    : "\(host) resolves to \(address), a \(kind) address; webhooks go only to public addresses unless webhooks.allowPrivateNetworks is on"
            }
        }
        return nil
    }

    /// The addresses `host` resolves to, as text (an address literal resolves to itself).
    static func resolve(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(list) }
        var addresses: [String] = []
        for entry in sequence(first: first, next: { $0.pointee.ai_next }) {
            var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0 {
                addresses.append(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
        }
        return addresses
    }

    /// What kind of non-public address `address` (an IPv4 or IPv6 literal) is, or nil for a public one.
    static func nonPublicKind(of address: String) -> String? {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 {
            return kind(ofIPv4: withUnsafeBytes(of: v4) { Array($0) })
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, address.split(separator: "%").first.map(String.init) ?? address, &v6) == 1 else {
            return "unparsable"
        }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
            return kind(ofIPv4: Array(bytes[12...]))
        }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) { return bytes[15] == 1 ? "loopback" : "unspecified" }
        if bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80 { return "link-local" }
        if bytes[0] & 0xFE == 0xFC { return "unique-local (private)" }
        if bytes[0] == 0xFF { return "multicast" }
        return nil
    }

    static func kind(ofIPv4 bytes: [UInt8]) -> String? {
        switch (bytes[0], bytes[1]) {
        case (0, _): "unspecified"
        case (10, _), (172, 16...31), (192, 168): "private"
        case (100, 64...127): "shared (CGNAT)"
        case (127, _): "loopback"
        case (169, 254): "link-local"
        case (224...239, _): "multicast"
        case (240...255, _): "reserved"
        default: nil
        }
    }
}
