import CCrypto

/// HMAC-SHA256 (RFC 2104) for `pii: hash` fields, with the SHA-256 states after the key's inner and
/// outer pads computed once at start: each value costs two state copies and two short digests
/// instead of an HMAC setup, and writes its lowercase hex straight into the output.
///
/// The two OpenSSL contexts are only read after `init` (copied from), which is safe from any thread.
final class KeyedHash: @unchecked Sendable {
    private let inner: OpaquePointer
    private let outer: OpaquePointer

    /// The hasher for `key` (any length; keys over 64 bytes are hashed first, as RFC 2104 says).
    init(key: [UInt8]) {
        var block = key.count > 64 ? Self.sha256(key) : key
        block += [UInt8](repeating: 0, count: 64 - block.count)
        inner = Self.state(after: block.map { $0 ^ 0x36 })
        outer = Self.state(after: block.map { $0 ^ 0x5C })
    }

    deinit {
        EVP_MD_CTX_free(inner)
        EVP_MD_CTX_free(outer)
    }

    /// The 32-byte HMAC-SHA256 of `message`.
    func mac(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 32) { output, count in
            let context = EVP_MD_CTX_new()
            defer { EVP_MD_CTX_free(context) }
            var length: UInt32 = 0
            var innerDigest = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            withUnsafeMutableBytes(of: &innerDigest) { digest in
                let bytes = digest.baseAddress!.assumingMemoryBound(to: UInt8.self)
                _ = EVP_MD_CTX_copy_ex(context, inner)
                _ = EVP_DigestUpdate(context, message.baseAddress, message.count)
                _ = EVP_DigestFinal_ex(context, bytes, &length)
                _ = EVP_MD_CTX_copy_ex(context, outer)
                _ = EVP_DigestUpdate(context, bytes, 32)
                _ = EVP_DigestFinal_ex(context, output.baseAddress, &length)
            }
            count = 32
        }
    }

    /// Appends the HMAC of `message` as 64 lowercase hex digits to `output`.
    func appendHex(_ message: UnsafeRawBufferPointer, to output: inout [UInt8]) {
        for byte in mac(message) {
            output.append(Self.digits[Int(byte >> 4)])
            output.append(Self.digits[Int(byte & 0x0F)])
        }
    }

    /// The HMAC of `message` as 64 lowercase hex digits.
    func hex(_ message: UnsafeRawBufferPointer) -> String {
        let digest = mac(message)
        return String(unsafeUninitializedCapacity: 64) { text in
            for (index, byte) in digest.enumerated() {
                text[2 * index] = Self.digits[Int(byte >> 4)]
                text[2 * index + 1] = Self.digits[Int(byte & 0x0F)]
            }
            return 64
        }
    }

    /// The HMAC of the UTF-8 bytes of `text` as 64 lowercase hex digits.
    func hex(_ text: String) -> String {
        var text = text
        return text.withUTF8 { hex(UnsafeRawBufferPointer($0)) }
    }

    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    private static func state(after pad: [UInt8]) -> OpaquePointer {
        let context = EVP_MD_CTX_new()!
        _ = EVP_DigestInit_ex(context, EVP_sha256(), nil)
        _ = pad.withUnsafeBytes { EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
        return context
    }

    private static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 32) { output, count in
            _ = bytes.withUnsafeBytes { SHA256($0.baseAddress?.assumingMemoryBound(to: UInt8.self), $0.count, output.baseAddress) }
            count = 32
        }
    }
}
