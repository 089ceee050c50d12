/// HMAC-SHA256 (RFC 2104, SHA-256 per FIPS 180-4) for `pii: hash` fields, with the SHA-256 states
/// after the key's inner and outer pads computed once at start: each value costs the compression
/// of its own blocks plus one for the outer digest, on the stack, with no allocation and no library
/// context, and its lowercase hex is written straight into the output.
///
/// A value type of plain words: safe to share between threads.
struct KeyedHash: Sendable {
    private let inner: SHA256.State
    private let outer: SHA256.State

    /// The hasher for `key` (any length; keys over 64 bytes are hashed first, as RFC 2104 says).
    init(key: [UInt8]) {
        var block = key.count > 64 ? SHA256.digest(key) : key
        block += [UInt8](repeating: 0, count: 64 - block.count)
        inner = SHA256.state(afterBlock: block.map { $0 ^ 0x36 })
        outer = SHA256.state(afterBlock: block.map { $0 ^ 0x5C })
    }

    /// Calls `body` with the 32-byte HMAC-SHA256 of `message`, held on the stack.
    func withMAC<Result>(_ message: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        var state = inner
        SHA256.finish(&state, message, lengthBefore: 64)
        var digest = state.bigEndianBytes
        return withUnsafeBytes(of: &digest) { innerDigest in
            var state = outer
            SHA256.finish(&state, innerDigest, lengthBefore: 64)
            var mac = state.bigEndianBytes
            return withUnsafeBytes(of: &mac, body)
        }
    }

    /// The 32-byte HMAC-SHA256 of `message`.
    func mac(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        withMAC(message) { Array($0) }
    }

    /// Appends the HMAC of `message` as 64 lowercase hex digits to `output`.
    func appendHex(_ message: UnsafeRawBufferPointer, to output: inout [UInt8]) {
        withMAC(message) { mac in
            for byte in mac {
                output.append(Self.digit(byte >> 4))
                output.append(Self.digit(byte & 0x0F))
            }
        }
    }

    /// The HMAC of `message` as 64 lowercase hex digits.
    func hex(_ message: UnsafeRawBufferPointer) -> String {
        withMAC(message) { mac in
            String(unsafeUninitializedCapacity: 64) { text in
                for (index, byte) in mac.enumerated() {
                    text[2 * index] = Self.digit(byte >> 4)
                    text[2 * index + 1] = Self.digit(byte & 0x0F)
                }
                return 64
            }
        }
    }

    /// The HMAC of the UTF-8 bytes of `text` as 64 lowercase hex digits.
    func hex(_ text: String) -> String {
        var text = text
        return text.withUTF8 { hex(UnsafeRawBufferPointer($0)) }
    }

    @inline(__always)
    private static func digit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 0x30 + nibble : 0x57 + nibble
    }
}

/// The SHA-256 compression function and padding (FIPS 180-4), enough for ``KeyedHash``.
enum SHA256 {
    /// The eight working words between blocks.
    struct State {
        var words: SIMD8<UInt32>

        /// The digest: the words in big-endian byte order.
        var bigEndianBytes: SIMD8<UInt32> {
            SIMD8(words[0].bigEndian, words[1].bigEndian, words[2].bigEndian, words[3].bigEndian,
                  words[4].bigEndian, words[5].bigEndian, words[6].bigEndian, words[7].bigEndian)
        }
    }

    static let initial = State(words: SIMD8(
        0x6A09_E667, 0xBB67_AE85, 0x3C6E_F372, 0xA54F_F53A, 0x510E_527F, 0x9B05_688C, 0x1F83_D9AB, 0x5BE0_CD19))

    /// The SHA-256 digest of `bytes`.
    static func digest(_ bytes: [UInt8]) -> [UInt8] {
        var state = initial
        bytes.withUnsafeBytes { finish(&state, $0, lengthBefore: 0) }
        return withUnsafeBytes(of: state.bigEndianBytes) { Array($0) }
    }

    /// The state after one 64-byte block from the initial state.
    static func state(afterBlock block: [UInt8]) -> State {
        var state = initial
        block.withUnsafeBytes { compress(&state, $0.baseAddress!) }
        return state
    }

    /// Feeds `message` and the final padding into `state`, which has already taken
    /// `lengthBefore` bytes (a multiple of 64).
    static func finish(_ state: inout State, _ message: UnsafeRawBufferPointer, lengthBefore: Int) {
        var offset = 0
        if let base = message.baseAddress {
            while message.count - offset >= 64 {
                compress(&state, base + offset)
                offset += 64
            }
        }
        let tail = message.count - offset
        let bits = UInt64(lengthBefore + message.count) * 8
        withUnsafeTemporaryAllocation(byteCount: 128, alignment: 8) { buffer in
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            if tail > 0 { buffer.baseAddress!.copyMemory(from: message.baseAddress! + offset, byteCount: tail) }
            buffer[tail] = 0x80
            let blocks = tail < 56 ? 1 : 2
            buffer.storeBytes(of: bits.bigEndian, toByteOffset: blocks * 64 - 8, as: UInt64.self)
            compress(&state, UnsafeRawPointer(buffer.baseAddress!))
            if blocks == 2 { compress(&state, UnsafeRawPointer(buffer.baseAddress! + 64)) }
        }
    }

    /// One application of the compression function to the 64 bytes at `block`.
    static func compress(_ state: inout State, _ block: UnsafeRawPointer) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { schedule in
            for index in 0..<16 {
                schedule[index] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self))
            }
            for index in 16..<64 {
                let w15 = schedule[index - 15], w2 = schedule[index - 2]
                let s0 = rotate(w15, 7) ^ rotate(w15, 18) ^ (w15 &>> 3)
                let s1 = rotate(w2, 17) ^ rotate(w2, 19) ^ (w2 &>> 10)
                schedule[index] = schedule[index - 16] &+ s0 &+ schedule[index - 7] &+ s1
            }
            var (a, b, c, d) = (state.words[0], state.words[1], state.words[2], state.words[3])
            var (e, f, g, h) = (state.words[4], state.words[5], state.words[6], state.words[7])
            roundConstants.withUnsafeBufferPointer { constants in
                for index in 0..<64 {
                    let s1 = rotate(e, 6) ^ rotate(e, 11) ^ rotate(e, 25)
                    let choice = (e & f) ^ (~e & g)
                    let t1 = h &+ s1 &+ choice &+ constants[index] &+ schedule[index]
                    let s0 = rotate(a, 2) ^ rotate(a, 13) ^ rotate(a, 22)
                    let majority = (a & b) ^ (a & c) ^ (b & c)
                    let t2 = s0 &+ majority
                    h = g
                    g = f
                    f = e
                    e = d &+ t1
                    d = c
                    c = b
                    b = a
                    a = t1 &+ t2
                }
            }
            state.words &+= SIMD8(a, b, c, d, e, f, g, h)
        }
    }

    @inline(__always)
    private static func rotate(_ word: UInt32, _ count: UInt32) -> UInt32 {
        (word &>> count) | (word &<< (32 &- count))
    }

    private static let roundConstants: [UInt32] = [
        0x428A_2F98, 0x7137_4491, 0xB5C0_FBCF, 0xE9B5_DBA5, 0x3956_C25B, 0x59F1_11F1, 0x923F_82A4, 0xAB1C_5ED5,
        0xD807_AA98, 0x1283_5B01, 0x2431_85BE, 0x550C_7DC3, 0x72BE_5D74, 0x80DE_B1FE, 0x9BDC_06A7, 0xC19B_F174,
        0xE49B_69C1, 0xEFBE_4786, 0x0FC1_9DC6, 0x240C_A1CC, 0x2DE9_2C6F, 0x4A74_84AA, 0x5CB0_A9DC, 0x76F9_88DA,
        0x983E_5152, 0xA831_C66D, 0xB003_27C8, 0xBF59_7FC7, 0xC6E0_0BF3, 0xD5A7_9147, 0x06CA_6351, 0x1429_2967,
        0x27B7_0A85, 0x2E1B_2138, 0x4D2C_6DFC, 0x5338_0D13, 0x650A_7354, 0x766A_0ABB, 0x81C2_C92E, 0x9272_2C85,
        0xA2BF_E8A1, 0xA81A_664B, 0xC24B_8B70, 0xC76C_51A3, 0xD192_E819, 0xD699_0624, 0xF40E_3585, 0x106A_A070,
        0x19A4_C116, 0x1E37_6C08, 0x2748_774C, 0x34B0_BCB5, 0x391C_0CB3, 0x4ED8_AA4A, 0x5B9C_CA4F, 0x682E_6FF3,
        0x748F_82EE, 0x78A5_636F, 0x84C8_7814, 0x8CC7_0208, 0x90BE_FFFA, 0xA450_6CEB, 0xBEF9_A3F7, 0xC671_78F2,
    ]
}
