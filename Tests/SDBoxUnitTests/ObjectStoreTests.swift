import Foundation
import ObjectStore
import Testing

@Suite struct URLSignerTests {
    let signer = URLSigner(secret: Data(repeating: 7, count: 32))
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func acceptsValidSignature() {
        let expires: Int64 = 1_800_000_060
        let signature = signer.signature(for: "images/default/a_1.png", expires: expires)
        #expect(signer.verify(objectKey: "images/default/a_1.png", expires: expires, signature: signature, now: now))
    }

    @Test func refusesTamperedOrExpired() {
        let expires: Int64 = 1_800_000_060
        let signature = signer.signature(for: "images/default/a_1.png", expires: expires)
        #expect(!signer.verify(objectKey: "images/default/b_1.png", expires: expires, signature: signature, now: now))
        #expect(!signer.verify(objectKey: "images/default/a_1.png", expires: expires + 1, signature: signature, now: now))
        #expect(!signer.verify(objectKey: "images/default/a_1.png", expires: expires, signature: "00" + signature.dropFirst(2), now: now))
        #expect(!signer.verify(objectKey: "images/default/a_1.png", expires: expires, signature: "zz", now: now))
        #expect(!signer.verify(objectKey: "images/default/a_1.png", expires: expires, signature: signature, now: now + 61))
        let other = URLSigner(secret: Data(repeating: 8, count: 32))
        #expect(!other.verify(objectKey: "images/default/a_1.png", expires: expires, signature: signature, now: now))
    }

    @Test func signedPathCarriesExpiryAndSignature() {
        let path = signer.signedPath(for: "images/default/a_1.png", expires: 5)
        #expect(path == "/objects/images/default/a_1.png?expires=5&sig=\(signer.signature(for: "images/default/a_1.png", expires: 5))")
    }
}

@Suite struct ObjectStoreTests {
    @Test func putGetAndDelete() async throws {
        let directory = try TemporaryDirectory()
        let store = try ObjectStore(root: directory.path)
        try await store.put(Data("hello".utf8), key: "images/alice/x_1.png")
        #expect(try await store.get("images/alice/x_1.png") == Data("hello".utf8))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path + "/images/alice")
        #expect(leftovers == ["x_1.png"])
        try await store.delete("images/alice/x_1.png")
        await #expect(throws: ObjectStoreError.notFound("images/alice/x_1.png")) {
            try await store.get("images/alice/x_1.png")
        }
    }

    @Test(arguments: ["../etc/passwd", "/etc/passwd", "images/../../x", "images/.hidden", "images//x", "", "a\\b", "images/\u{0}x"])
    func refusesKeysOutsideTheRoot(key: String) throws {
        let directory = try TemporaryDirectory()
        let store = try ObjectStore(root: directory.path)
        #expect(throws: ObjectStoreError.invalidKey(key)) { try store.path(for: key) }
    }

    @Test func imageKeysFollowTheOriginalLayout() {
        #expect(ObjectKey.image(user: "admin", taskID: "1HmyrbhBJD", index: 1) == "images/admin/1HmyrbhBJD_1.png")
    }
}

/// Secrets made once, whoever asks first: boxes sharing a folder start together and must agree.
@Suite struct SecretFileTests {
    @Test func concurrentCreatorsAllGetTheOneSecretWritten() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/url-signing.key"
        let secrets = await withTaskGroup(of: Data?.self) { group in
            for _ in 0..<16 {
                group.addTask { try? URLSigner.loadOrCreateSecret(at: path) }
            }
            return await group.reduce(into: [Data?]()) { $0.append($1) }
        }
        let written = try #require(FileManager.default.contents(atPath: path))
        #expect(written.count == 32 && secrets.allSatisfy { $0 == written }, "every caller got the secret on disk")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["url-signing.key"], "no temporary file left")
        // A damaged one is replaced.
        try Data("short".utf8).write(to: URL(fileURLWithPath: path))
        let replaced = try URLSigner.loadOrCreateSecret(at: path)
        #expect(replaced.count == 32 && FileManager.default.contents(atPath: path) == replaced)
    }
}
