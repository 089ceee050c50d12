import Foundation
import ServiceKit
import Testing

@Suite("API keys")
struct APIKeysTests {
    @Test("a keys file maps key hashes to names and roles; comments and blank lines are ignored")
    func parsing() throws {
        let writer = APIKeys.generate(name: "ingest-writer", roles: [.producer])
        let operatorKey = APIKeys.generate(name: "ops", roles: [.operator, .viewer])
        let text = """
            # FeedbackLoop API keys: hashes only
            \(writer.hashLine)

            \(operatorKey.hashLine.uppercased().replacingOccurrences(of: "OPS OPERATOR,VIEWER SHA256:", with: "ops operator,viewer sha256:"))   # trailing comment
            """
        let keys = try APIKeys(parsing: text, origin: "keys.txt")
        #expect(keys.count == 2)
        #expect(keys.identity(forKey: writer.key) == APIKeyIdentity(name: "ingest-writer", roles: [.producer]))
        #expect(keys.identity(forKey: operatorKey.key) == APIKeyIdentity(name: "ops", roles: [.operator, .viewer]))
        #expect(keys.identity(forKey: "loop_" + String(repeating: "0", count: 64)) == nil)
        #expect(keys.identity(forKey: writer.hashLine) == nil)
    }

    @Test("a stored hash is the SHA-256 of the key")
    func hashIsSHA256() throws {
        let keys = try APIKeys(
            parsing: "tester viewer sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            origin: "inline")
        #expect(keys.identity(forKey: "test")?.name == "tester")
    }

    @Test("generated keys are 256-bit random tokens whose hash line parses back")
    func generation() throws {
        let first = APIKeys.generate(name: "a", roles: [.reviewer, .viewer])
        let second = APIKeys.generate(name: "a", roles: [.reviewer, .viewer])
        #expect(first.key != second.key)
        #expect(first.key.wholeMatch(of: /loop_[0-9a-f]{64}/) != nil)
        #expect(first.hashLine.hasPrefix("a reviewer,viewer sha256:"))
        #expect(!first.hashLine.contains(first.key))
        let keys = try APIKeys(parsing: first.hashLine, origin: "generated")
        #expect(keys.identity(forKey: first.key)?.roles == [.reviewer, .viewer])
    }

    @Test("malformed lines are errors naming the origin and line", arguments: [
        ("ops admin sha256:" + String(repeating: "a", count: 64), "unknown role 'admin'"),
        ("ops operator loop_0123456789", "never the key itself"),
        ("ops operator sha256:abcd", "64 hex digits"),
        ("ops operator", "expected `<name>"),
        ("ops operator sha256:" + String(repeating: "g", count: 64), "64 hex digits"),
    ])
    func malformed(line: String, reason: String) {
        do {
            _ = try APIKeys(parsing: "# header\n" + line, origin: "keys.txt")
            Issue.record("expected an error for \(line)")
        } catch {
            #expect(error.code == .badKeys)
            #expect(error.message.contains("keys.txt line 2"))
            #expect(error.message.contains(reason), "\(error.message)")
        }
    }

    @Test("a hash listed twice is an error")
    func duplicate() {
        let key = APIKeys.generate(name: "a", roles: [.viewer])
        #expect(throws: ServiceError.self) {
            try APIKeys(parsing: key.hashLine + "\n" + key.hashLine.replacingOccurrences(of: "a ", with: "b "),
                        origin: "keys.txt")
        }
    }

    @Test("keys load from a file and from inline `;`-separated lines")
    func loading() throws {
        let fromFile = APIKeys.generate(name: "file", roles: [.producer])
        let inline1 = APIKeys.generate(name: "inline1", roles: [.viewer])
        let inline2 = APIKeys.generate(name: "inline2", roles: [.reviewer])
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID()).txt").path
        try (fromFile.hashLine + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }

        let keys = try APIKeys.load(path: path, inline: inline1.hashLine + ";" + inline2.hashLine)
        #expect(keys.count == 3)
        #expect(keys.identity(forKey: inline2.key)?.name == "inline2")

        do {
            _ = try APIKeys.load(path: "/nonexistent/keys.txt", inline: nil)
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .badKeys)
            #expect(error.message.contains("/nonexistent/keys.txt"))
        }
    }
}
