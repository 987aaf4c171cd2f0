import Testing

@testable import SDBoxServer

@Suite struct WebhookTargetTests {
    @Test(arguments: [
        ("8.8.8.8", nil), ("1.1.1.1", nil), ("172.32.0.1", nil), ("100.128.0.1", nil), ("2001:4860:4860::8888", nil),
        ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
        ("::ffff:192.168.0.9", "private"), ("fd12:3456::1", "unique-local (private)"), ("100.64.0.1", "shared (CGNAT)"),
        ("169.254.169.254", "link-local"), ("fe80::1%2", "link-local"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
        ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("255.255.255.255", "reserved"),
    ] as [(String, String?)])
    func classifiesAddresses(address: String, kind: String?) {
        #expect(WebhookTarget.nonPublicKind(of: address) == kind)
    }

    @Test func refusesHostsThatAreOrResolveToPrivateAddresses() async {
        #expect(await WebhookTarget.refusal(of: "https://93.184.216.34/hook") == nil)
        #expect(await WebhookTarget.refusal(of: "http://[::1]:8080/hook")?.contains("::1 is a loopback address") == true)
        #expect(await WebhookTarget.refusal(of: "http://localhost:8080/hook")?.contains("localhost resolves to") == true)
    }
}
