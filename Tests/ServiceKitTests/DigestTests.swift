import ServiceKit
import Testing

@Suite("Digest")
struct DigestTests {
    // FIPS 180-2 / NIST examples.
    @Test("SHA-256 matches the standard test vectors", arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func sha256(input: String, expected: String) {
        #expect(Digest.hex(Digest.sha256(input)) == expected)
        #expect(Digest.hex(Digest.sha256(Array(input.utf8)[...])) == expected)
    }

    @Test("SHA-256 of a million 'a's")
    func sha256Long() {
        let input = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(Digest.hex(Digest.sha256(input)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    // RFC 4231 test cases 1, 2, 6 and 7.
    @Test("HMAC-SHA256 matches RFC 4231")
    func hmacRFC4231() {
        let case1 = Digest.hmacSHA256(key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8))
        #expect(Digest.hex(case1) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")

        let case2 = Digest.hmacSHA256(key: "Jefe", message: "what do ya want for nothing?")
        #expect(Digest.hex(case2) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")

        let longKey = [UInt8](repeating: 0xaa, count: 131)
        let case6 = Digest.hmacSHA256(
            key: longKey, message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8))
        #expect(Digest.hex(case6) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")

        let case7 = Digest.hmacSHA256(
            key: longKey,
            message: Array(("This is a test using a larger than block-size key and a larger than block-size data. "
                + "The key needs to be hashed before being used by the HMAC algorithm.").utf8))
        #expect(Digest.hex(case7) == "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2")
    }

    @Test("HMAC-SHA256 with an empty key and message")
    func hmacEmpty() {
        #expect(Digest.hex(Digest.hmacSHA256(key: "", message: ""))
            == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }

    @Test("hex round-trips and rejects non-hex")
    func hex() {
        #expect(Digest.bytes(fromHex: "00ff10Ab") == [0x00, 0xff, 0x10, 0xab])
        #expect(Digest.hex([0x00, 0xff, 0x10, 0xab]) == "00ff10ab")
        #expect(Digest.bytes(fromHex: "abc") == nil)
        #expect(Digest.bytes(fromHex: "zz") == nil)
    }
}
