import Foundation
import Testing

@testable import Appliance
@testable import SDBoxServer

@Suite struct OutboundTargetTests {
    @Test(arguments: [
        ("8.8.8.8", nil), ("1.1.1.1", nil), ("172.32.0.1", nil), ("100.128.0.1", nil), ("2001:4860:4860::8888", nil),
        ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
        ("::ffff:192.168.0.9", "private"), ("::10.0.0.1", "private"), ("64:ff9b::7f00:1", "loopback"), ("2002:c0a8:101::1", "private"),
        ("fd12:3456::1", "unique-local (private)"), ("fec0::1", "site-local (private)"), ("100.64.0.1", "shared (CGNAT)"),
        ("169.254.169.254", "link-local"), ("fe80::1%2", "link-local"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
        ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("255.255.255.255", "reserved"), ("192.0.0.8", "reserved (IETF)"),
        ("198.18.0.1", "reserved (benchmarking)"), ("::ffff:0:127.0.0.1", "loopback"), ("::ffff:0:10.0.0.1", "private"),
        ("::ffff:0:8.8.8.8", nil), ("64:ff9b:1::a00:1", "reserved (local NAT64)"), ("2001:db8::1", "reserved (documentation)"),
        ("100::1", "reserved (discard)"),
    ] as [(String, String?)])
    func classifiesAddresses(address: String, kind: String?) {
        #expect(OutboundTarget.nonPublicKind(of: address) == kind)
    }

    @Test func refusesPrivateHostsWithoutALookupAtSubmission() {
        #expect(OutboundTarget.webhooks.refusalWithoutLookup(of: "http://127.0.0.1:9/x")?.contains("127.0.0.1 is a loopback address") == true)
        #expect(OutboundTarget.webhooks.refusalWithoutLookup(of: "http://[fd00::1]/x")?.contains("unique-local") == true)
        #expect(OutboundTarget.webhooks.refusalWithoutLookup(of: "http://LocalHost:8080/x")?.contains("loopback name") == true)
        #expect(OutboundTarget.webhooks.refusalWithoutLookup(of: "http://api.localhost/x")?.contains("loopback name") == true)
        #expect(OutboundTarget.webhooks.refusalWithoutLookup(of: "https://hooks.example.com/x") == nil)
        #expect(OutboundTarget.webhooks.refusalWithoutLookup(of: "https://93.184.216.34/x") == nil)
    }

    @Test func checksEveryAddressBeforeAPost() async {
        #expect(await OutboundTarget.webhooks.check("https://93.184.216.34/hook") == .allowed(url: "https://93.184.216.34/hook", host: nil))
        #expect(await OutboundTarget.webhooks.check("http://93.184.216.34:8080/hook") == .allowed(url: "http://93.184.216.34:8080/hook", host: nil))
        guard case .refused(let reason) = await OutboundTarget.webhooks.check("http://localhost:8080/hook") else {
            Issue.record("localhost is not refused")
            return
        }
        #expect(reason.contains("localhost resolves to"))
        #expect(await OutboundTarget.webhooks.check("http://[::1]:8080/hook") == .refused("::1 is a loopback address; \(OutboundTarget.webhooks.rule)"))
    }

    /// An http POST goes to the address that was checked, with the name as its Host header.
    @Test func pinsHTTPToTheCheckedAddress() throws {
        let components = try #require(URLComponents(string: "http://hooks.example.com:8080/a/b?c=d"))
        #expect(OutboundTarget.pin(components, to: "93.184.216.34") == .allowed(url: "http://93.184.216.34:8080/a/b?c=d", host: "hooks.example.com:8080"))
        let plain = try #require(URLComponents(string: "http://hooks.example.com/x"))
        #expect(OutboundTarget.pin(plain, to: "2606:2800:220:1::1") == .allowed(url: "http://[2606:2800:220:1::1]/x", host: "hooks.example.com"))
    }
}
