import Foundation
import NIOPosix

/// Keeps requests sdbox makes on someone's word out of the box's own network: webhooks (a user must not
/// make sdbox POST to its loopback, where workers answer without a key, or to the private network behind
/// it) and model downloads (a site's redirect must not lead there either). Unless the feature's
/// `allowPrivateNetworks` is on, a URL whose host is, or resolves to, a loopback, private, link-local,
/// unique-local, shared (CGNAT), unspecified, multicast or reserved address is refused: with 400 when the
/// host is such an address or `localhost` (no lookup on the request path), and before each request after
/// a lookup on a pool of its own. An `http` request then connects to the address that was checked, so the
/// name cannot resolve elsewhere in between; an `https` one resolves it again (a private service reached
/// that way would also have to speak TLS).
package struct OutboundTarget: Sendable {
    /// The rule a refusal quotes, naming the setting that lifts it.
    let rule: String

    /// Webhooks (`webhooks.allowPrivateNetworks`).
    package static let webhooks = OutboundTarget(rule: "webhooks go only to public addresses unless webhooks.allowPrivateNetworks is on")
    /// Model downloads and the redirects they follow (`models.allowPrivateNetworks`).
    package static let modelDownloads = OutboundTarget(rule: "models are downloaded only from public addresses unless models.allowPrivateNetworks is on")

    /// Where a request may go.
    enum Check: Equatable {
        /// To `url` (for `http`, the checked address in place of the name, with `host` as the Host header).
        case allowed(url: String, host: String?)
        /// Nowhere, and never will: the reason names the address and its kind.
        case refused(String)
        /// Not now: the name did not resolve.
        case unresolved(String)
    }

    /// Why `url` may not receive webhooks, judged without a lookup: its host is a non-public address or
    /// `localhost`; nil otherwise.
    package func refusalWithoutLookup(of url: String) -> String? {
        guard let host = Self.host(of: url) else { return nil }
        if host.lowercased() == "localhost" || host.lowercased().hasSuffix(".localhost") {
            return "\(host) is a loopback name; \(rule)"
        }
        guard Self.isAddress(host), let kind = Self.nonPublicKind(of: host) else { return nil }
        return reason(host, address: host, kind: kind)
    }

    /// Resolves `url`'s host (on the resolver pool) and judges every address it has.
    func check(_ url: String) async -> Check {
        guard let components = URLComponents(string: url), let host = Self.host(of: components) else { return .refused("\(url) has no host") }
        let addresses = (try? await Self.resolverPool.runIfActive { Self.resolve(host) }) ?? []
        guard let first = addresses.first else { return .unresolved("\(host) did not resolve") }
        for address in addresses {
            if let kind = Self.nonPublicKind(of: address) { return .refused(reason(host, address: address, kind: kind)) }
        }
        guard components.scheme?.lowercased() == "http", !Self.isAddress(host) else { return .allowed(url: url, host: nil) }
        return Self.pin(components, to: first)
    }

    /// `components` (an `http` URL naming a host) pointed at `address`, the name going in the Host header.
    static func pin(_ components: URLComponents, to address: String) -> Check {
        var pinned = components
        pinned.host = address.contains(":") ? "[\(address)]" : address
        let name = components.host ?? ""
        return .allowed(url: pinned.string ?? "", host: components.port.map { "\(name):\($0)" } ?? name)
    }

    /// Why `host`, which is or resolves to `address`, a non-public address of `kind`, is refused.
    func reason(_ host: String, address: String, kind: String) -> String {
        (address == host ? "\(host) is a \(kind) address" : "\(host) resolves to \(address), a \(kind) address") + "; " + rule
    }

    /// Lookups block a thread for as long as the name server takes: they get threads of their own, not
    /// the pool LMDB transactions run on.
    static let resolverPool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        return pool
    }()

    static func host(of url: String) -> String? {
        URLComponents(string: url).flatMap(host(of:))
    }

    /// The host, without the brackets of an IPv6 address.
    static func host(of components: URLComponents) -> String? {
        guard var host = components.host, !host.isEmpty else { return nil }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host
    }

    static func isAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text.split(separator: "%").first.map(String.init) ?? text, &v6) == 1
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
        if bytes[0..<15].allSatisfy({ $0 == 0 }) { return bytes[15] == 1 ? "loopback" : "unspecified" }
        // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), translated (::ffff:0:a.b.c.d),
        // NAT64 (64:ff9b::a.b.c.d), 6to4 (2002:aabb:ccdd::).
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && (bytes[10...11] == [0xFF, 0xFF] || bytes[10...11] == [0, 0]) {
            return kind(ofIPv4: Array(bytes[12...]))
        }
        if bytes[0..<8].allSatisfy({ $0 == 0 }) && bytes[8...11] == [0xFF, 0xFF, 0, 0] { return kind(ofIPv4: Array(bytes[12...])) }
        if bytes[0...5] == [0x00, 0x64, 0xFF, 0x9B, 0x00, 0x01] { return "reserved (local NAT64)" }
        if bytes[0...3] == [0x20, 0x01, 0x0D, 0xB8] { return "reserved (documentation)" }
        if bytes[0...1] == [0x01, 0x00] && bytes[2..<8].allSatisfy({ $0 == 0 }) { return "reserved (discard)" }
        if bytes[0...3] == [0x00, 0x64, 0xFF, 0x9B] && bytes[4..<12].allSatisfy({ $0 == 0 }) { return kind(ofIPv4: Array(bytes[12...])) }
        if bytes[0...1] == [0x20, 0x02] { return kind(ofIPv4: Array(bytes[2...5])) }
        if bytes[0] == 0xFE && bytes[1] & 0xC0 == 0xC0 { return "site-local (private)" }
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
        case (192, 0) where bytes[2] == 0: "reserved (IETF)"
        case (198, 18...19): "reserved (benchmarking)"
        case (127, _): "loopback"
        case (169, 254): "link-local"
        case (224...239, _): "multicast"
        case (240...255, _): "reserved"
        default: nil
        }
    }
}
