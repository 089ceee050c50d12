import Testing
import Foundation
@testable import Contracts

func parse(_ text: String) throws(JSONError) -> JSONValue { try JSONValue.parse(text) }

func jsonError(_ text: String, maxDepth: Int = JSONValue.defaultMaxDepth) -> JSONError? {
    do {
        _ = try JSONValue.parse(Array(text.utf8), maxDepth: maxDepth)
        return nil
    } catch {
        return error
    }
}

@Suite struct JSONParsingTests {
    @Test func scalars() throws {
        #expect(try parse("null") == .null)
        #expect(try parse(" true ") == .bool(true))
        #expect(try parse("false") == .bool(false))
        #expect(try parse("\"hi\"") == .string("hi"))
        #expect(try parse("[]") == .array([]))
        #expect(try parse("{}") == .object(JSONObject()))
    }

    @Test func numbersKeepIntegersExact() throws {
        #expect(try parse("0") == .int(0))
        #expect(try parse("-0") == .int(0))
        #expect(try parse("9223372036854775807") == .int(.max))
        #expect(try parse("-9223372036854775808") == .int(.min))
        #expect(try parse("9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(try parse("1.5") == .double(1.5))
        #expect(try parse("1.0") == .double(1.0))
        #expect(try parse("-2.5E-3") == .double(-0.0025))
        #expect(try parse("1e2") == .double(100))
        #expect(try parse("0.1") == .double(0.1))
        #expect(try parse("123456789012345678901234567890") == .double(1.2345678901234568e29))
        #expect(try parse("2.2250738585072014e-308") == .double(2.2250738585072014e-308))
        #expect(try parse("0.30000000000000004") == .double(0.30000000000000004))
        #expect(try parse("1e-400") == .double(0))
    }

    @Test(arguments: ["01", "1.", ".5", "+1", "-", "1e", "1e+", "--1", "0x10", "1.e3", "Infinity", "NaN"])
    func rejectsBadNumbers(text: String) {
        let error = jsonError(text)
        #expect(error != nil)
        #expect([.invalidNumber, .unexpectedByte, .unexpectedEnd, .trailingData].contains(error?.reason))
    }

    @Test func numberOutOfRange() {
        #expect(jsonError("1e400")?.reason == .numberOutOfRange)
        #expect(jsonError("[-1e309]")?.offset == 1)
    }

    @Test func escapes() throws {
        #expect(try parse(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{8}\u{C}\n\r\t"))
        #expect(try parse(#""\u0041\u00e9\u20AC""#) == .string("Aé€"))
        #expect(try parse(#""\uD83D\uDE00""#) == .string("😀"))
        #expect(try parse("\"é😀\"") == .string("é😀"))
        #expect(try parse(#""a\u0000b""#) == .string("a\u{0}b"))
    }

    @Test func badEscapesAndSurrogates() {
        #expect(jsonError(#""\x""#)?.reason == .invalidEscape)
        #expect(jsonError(#""\u12G4""#)?.reason == .invalidEscape)
        #expect(jsonError(#""\uDEAD""#)?.reason == .invalidEscape)
        #expect(jsonError(#""\uD800""#)?.reason == .invalidEscape)
        #expect(jsonError(#""\uD800\u0041""#)?.reason == .invalidEscape)
        #expect(jsonError(#""ab\uD800x""#)?.offset == 3)
    }

    @Test func controlCharactersAndInvalidUTF8() {
        #expect(jsonError("\"a\nb\"")?.reason == .controlCharacter)
        #expect(jsonError("\"a\tb\"")?.offset == 2)
        var bytes = Array("\"ab".utf8)
        bytes += [0xC0, 0xA0, UInt8(ascii: "\"")]
        #expect(throws: JSONError.self) { try JSONValue.parse(bytes) }
        #expect((try? JSONValue.parse([UInt8(ascii: "\""), 0xFF, UInt8(ascii: "\"")])) == nil)
    }

    @Test func structureErrorsCarryOffsets() {
        #expect(jsonError("[1, 2")?.reason == .unexpectedEnd)
        #expect(jsonError("[1 2]")?.offset == 3)
        #expect(jsonError("{\"a\" 1}")?.reason == .unexpectedByte)
        #expect(jsonError("{a: 1}")?.offset == 1)
        #expect(jsonError("[1,]")?.reason == .unexpectedByte)
        #expect(jsonError("")?.reason == .unexpectedEnd)
        #expect(jsonError("tru")?.reason == .unexpectedEnd)
        #expect(jsonError("nul1")?.offset == 3)
        #expect(jsonError("\"abc")?.reason == .unexpectedEnd)
    }

    @Test func trailingGarbage() {
        #expect(jsonError("{} x")?.reason == .trailingData)
        #expect(jsonError("{} x")?.offset == 3)
        #expect(jsonError("1 2")?.reason == .trailingData)
        #expect(jsonError("[] \n\t ") == nil)
    }

    @Test func duplicateKeysAreRejected() {
        #expect(jsonError(#"{"a":1,"a":2}"#)?.reason == .duplicateKey)
        #expect(jsonError(#"{"b":1,"a":2,"b":3}"#)?.offset == 13)
        #expect(jsonError(#"{"a":1,"\u0061":2}"#)?.reason == .duplicateKey)
    }

    @Test func depthLimit() {
        let deep = String(repeating: "[", count: 129) + String(repeating: "]", count: 129)
        #expect(jsonError(deep)?.reason == .depthLimitExceeded)
        #expect(jsonError(deep, maxDepth: 129) == nil)
        let objects = String(repeating: "{\"a\":", count: 10) + "1" + String(repeating: "}", count: 10)
        #expect(jsonError(objects, maxDepth: 9)?.reason == .depthLimitExceeded)
        #expect(jsonError(objects, maxDepth: 10) == nil)
    }

    @Test func reusedParserGivesTheSameResults() throws {
        var parser = JSONParser()
        for text in [#"{"b":[1,{"z":1,"a":2}],"a":"x"}"#, "[1,2,3]", #"{"q":"\n"}"#] {
            let bytes = Array(text.utf8)
            let reused = try bytes.withUnsafeBytes { buffer throws(JSONError) in try parser.parse(buffer) }
            #expect(reused == (try JSONValue.parse(bytes)))
        }
        #expect(throws: JSONError.self) { try Array("[1,".utf8).withUnsafeBytes { buffer throws(JSONError) in try parser.parse(buffer) } }
        #expect(try Array("[true]".utf8).withUnsafeBytes { buffer throws(JSONError) in try parser.parse(buffer) } == [true])
    }
}

@Suite struct CanonicalJSONTests {
    @Test func sortsKeysAndDropsWhitespace() throws {
        let value = try parse(#" { "b" : 1 , "a" : [ true , null , { "d" : 1.5, "c" : "x" } ], "aa": -7 } "#)
        #expect(value.canonicalString == #"{"a":[true,null,{"c":"x","d":1.5}],"aa":-7,"b":1}"#)
    }

    @Test func keysSortByUTF8Bytes() {
        let object: JSONValue = ["é": 1, "z": 2, "Z": 3, "_": 4, "": 5, "😀": 6, "\u{FFFF}": 7]
        #expect(object.canonicalString == #"{"":5,"Z":3,"_":4,"z":2,"é":1,"\#u{FFFF}":7,"😀":6}"#)
    }

    @Test func numbers() {
        #expect(JSONValue.int(-9_223_372_036_854_775_808).canonicalString == "-9223372036854775808")
        #expect(JSONValue.double(1.0).canonicalString == "1.0")
        #expect(JSONValue.double(0.1).canonicalString == "0.1")
        #expect(JSONValue.double(1e21).canonicalString == "1e+21")
        #expect(JSONValue.double(.leastNonzeroMagnitude).canonicalString == "5e-324")
        #expect(JSONValue.double(.nan).canonicalString == "null")
        #expect(JSONValue.double(.infinity).canonicalString == "null")
    }

    @Test func stringEscapes() {
        #expect(JSONValue.string("a\"b\\c\n\u{1}/é").canonicalString == #""a\"b\\c\n\u0001/é""#)
        let long = String(repeating: "abcdefgh", count: 5) + "\t" + String(repeating: "x", count: 9)
        #expect(JSONValue.string(long).canonicalString == "\"" + String(repeating: "abcdefgh", count: 5) + "\\t" + String(repeating: "x", count: 9) + "\"")
    }

    @Test func stableAcrossInputOrder() throws {
        let a = try parse(#"{"x":1,"y":{"b":2,"a":1}}"#)
        let b = try parse(#"{"y":{"a":1,"b":2},"x":1}"#)
        #expect(a == b)
        #expect(a.canonicalBytes() == b.canonicalBytes())
        #expect(try JSONValue.parse(a.canonicalBytes()).canonicalBytes() == a.canonicalBytes())
    }

    @Test func roundTripsRandomValues() throws {
        var random = SeededGenerator(seed: 42)
        for _ in 0..<2000 {
            let value = randomValue(depth: 0, using: &random)
            let bytes = value.canonicalBytes()
            let parsed = try JSONValue.parse(bytes)
            #expect(parsed == value)
            #expect(parsed.canonicalBytes() == bytes)
        }
    }

    @Test func objectEditing() {
        var object: JSONObject = ["b": 1, "a": 2]
        object["c"] = 3
        object["a"] = nil
        #expect(object.keys == ["b", "c"])
        #expect(object.removeValue(forKey: "b") == .int(1))
        #expect(JSONObject([("k", 1), ("k", 2)])["k"] == .int(2))
    }
}

// MARK: - Random values

/// A small deterministic generator (SplitMix64) so failures reproduce.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func randomString(using random: inout SeededGenerator) -> String {
    let pool: [Unicode.Scalar] = ["a", "b", "Z", "0", " ", "\"", "\\", "/", "\n", "\u{1}", "\u{7F}", "é", "€", "😀", "\u{FFFF}", "\u{10FFFF}"]
    return String(String.UnicodeScalarView((0..<Int.random(in: 0...12, using: &random)).map { _ in pool.randomElement(using: &random)! }))
}

func randomValue(depth: Int, using random: inout SeededGenerator) -> JSONValue {
    switch Int.random(in: 0...(depth > 3 ? 4 : 6), using: &random) {
    case 0: return .null
    case 1: return .bool(Bool.random(using: &random))
    case 2: return .int(Int64.random(in: .min ... .max, using: &random) >> Int64.random(in: 0...63, using: &random))
    case 3:
        let bits = UInt64.random(in: 0 ... .max, using: &random)
        let value = Double(bitPattern: bits)
        return .double(value.isFinite ? value : Double.random(in: -1e6...1e6, using: &random))
    case 4: return .string(randomString(using: &random))
    case 5: return .array((0..<Int.random(in: 0...5, using: &random)).map { _ in randomValue(depth: depth + 1, using: &random) })
    default:
        let pairs = (0..<Int.random(in: 0...5, using: &random)).map { _ in
            (randomString(using: &random), randomValue(depth: depth + 1, using: &random))
        }
        return .object(JSONObject(pairs))
    }
}

@Suite struct DoubleTextTests {
    /// Edge values and a million random bit patterns: the bytes equal `description`, and read back
    /// to the same `Double`.
    @Test func writesWhatDescriptionSaysWithoutAString() {
        var generator = SystemRandomNumberGenerator()
        let edges: [Double] = [
            0, -0.0, 1, -1, 0.1, 0.3, 1e-7, 1e16, 1e21, 123_456_789.125, .leastNonzeroMagnitude,
            .leastNormalMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 0.30000000000000004,
        ]
        let random = (0..<1_000_000).map { _ in Double(bitPattern: generator.next()) }.filter(\.isFinite)
        var mismatches = 0
        var output: [UInt8] = []
        for value in edges + random {
            output.removeAll(keepingCapacity: true)
            DoubleText.appendJSON(value, to: &output)
            let text = String(decoding: output, as: UTF8.self)
            if text != value.description || Double(text)?.bitPattern != value.bitPattern { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    @Test func nonFiniteIsNull() {
        for value in [Double.nan, .infinity, -.infinity] {
            var output: [UInt8] = []
            DoubleText.appendJSON(value, to: &output)
            #expect(output == Array("null".utf8))
        }
    }
}

@Suite struct NumberTextTests {
    @Test("numbers read by exact decimal arithmetic are the doubles strtod reads, and the rest fall back to it")
    func exactDecimalNumbers() {
        let texts = ["0", "-0", "1", "-1", "0.5", "0.1", "0.3", "123.456", "-0.000123", "9007199254740992", "9007199254740993",
                     "1e22", "1e23", "1.5e-22", "2.5E+3", "0.1e1", "12345678901234567", "1e-400", "1e400", "4.35", "0.9999999999999999",
                     "0.30000000000000004", "-1.7976931348623157e308", "5e-324"]
            + Self.randomNumberTexts(in: -1000...1000, scientificDigits: 3)
        var exact = 0
        for text in texts {
            let bytes = Array(text.utf8)
            let expected = Double(text)!
            let read = bytes.withUnsafeBytes { NumberText.double($0) }
            #expect(read.bitPattern == expected.bitPattern, "\(text)")
            if let fast = bytes.withUnsafeBytes({ NumberText.exactDecimal($0) }) {
                exact += 1
                #expect(fast.bitPattern == expected.bitPattern, "\(text)")
            }
        }
        #expect(exact > texts.count / 2, "most short decimals take the exact path")
    }

    @Test("a number read in one pass inside other bytes ends where its text ends and is the double strtod reads; bytes that are not a JSON number read as nil")
    func numbersReadInPlace() {
        let texts = ["0", "-0", "7", "0.5", "-0.000123", "9007199254740993", "1e22", "1e23", "2.5E+3", "1E-2", "12345678901234567",
                     "1e-400", "1e400", "1e4000", "0.30000000000000004", "-1.7976931348623157e308", "5e-324", "100", "0.1e1"]
            + Self.randomNumberTexts(in: -1e6...1e6, scientificDigits: 4)
        for text in texts {
            for tail in ["", ",", "}", "]x"] {
                let bytes = Array(("[" + text + tail).utf8)
                let read = bytes.withUnsafeBytes { NumberText.read($0, at: 1) }
                #expect(read?.end == 1 + text.utf8.count, "\(text)\(tail)")
                #expect(read?.value.bitPattern == Double(text)!.bitPattern, "\(text)")
            }
        }
        for bad in ["", "-", "+1", "01", "-01", "1.", ".5", "1e", "1e+", "1.e5", "--1", "x"] {
            let bytes = Array(("[" + bad).utf8)
            #expect(bytes.withUnsafeBytes { NumberText.read($0, at: 1) } == nil, "\(bad)")
        }
        // The number ends where its grammar does; what follows is the caller's to check.
        let prefix = Array("[0x10".utf8).withUnsafeBytes { NumberText.read($0, at: 1) }
        #expect(prefix?.end == 2 && prefix?.value == 0)
    }

    /// 20,000 random doubles in `range`, each written three ways: Swift's shortest form, six
    /// fraction digits, and scientific with `scientificDigits` digits after the point.
    static func randomNumberTexts(in range: ClosedRange<Double>, scientificDigits: Int) -> [String] {
        var random = SystemRandomNumberGenerator()
        return (0..<20_000).flatMap { _ in
            let value = Double.random(in: range, using: &random)
            return ["\(value)", String(format: "%.6f", value), String(format: "%.\(scientificDigits)e", value)]
        }
    }
}
