import Foundation

/// What a setting declares about itself, independent of its value type: enough to generate
/// `--help`, to log the resolved settings without secrets, and to check a deployment's env vars
/// against the settings a service actually reads.
public struct SettingSpec: Sendable, Hashable {
    /// The setting's name, in kebab-case (`admin-port`).
    public var name: String
    /// The environment variable that sets it (`LOOP_ADMIN_PORT`).
    public var environmentVariable: String
    /// The command-line flag that sets it, overriding the env var (`--admin-port`).
    public var flag: String
    /// The default as text, or `nil` when there is none.
    public var defaultText: String?
    /// A short placeholder for the value in `--help` (`<port>`).
    public var valueName: String
    /// One or two sentences for `--help`.
    public var help: String
    /// The service refuses to start without it.
    public var isRequired: Bool
    /// Its value is never logged or printed.
    public var isSecret: Bool
    /// What the value may be, for error messages (`an integer from 0 to 65535`).
    public var expectation: String
}

/// A setting read by a service whose parsed values have the type-erased form `any Sendable`.
///
/// ``Setting`` is the only conforming type; the protocol lets a list hold settings of different
/// value types.
public protocol SettingDeclaration: Sendable {
    var spec: SettingSpec { get }
    /// The parsed value of `text`, or `nil` when `text` is not a valid value.
    func parsedValue(_ text: String) -> (any Sendable)?
    /// A flag that takes no value (`--verbose` means `true`).
    var isSwitch: Bool { get }
}

/// One typed setting, declared once: name, env var, flag, default, help and whether it is required
/// or secret. Read its value from parsed ``Settings`` with `settings[setting]`.
///
/// ```swift
/// static let batchSize = Setting.integer("batch-size", default: 500, range: 1...10_000,
///                                        help: "Events per produced batch.")
/// ```
/// The env var and flag are derived from the name (`LOOP_BATCH_SIZE`, `--batch-size`) unless given.
public struct Setting<Value: Sendable>: SettingDeclaration {
    public let spec: SettingSpec
    public let isSwitch: Bool
    /// The value when the setting is not given (for required settings it is never observed).
    let fallback: Value
    let parse: @Sendable (String) -> Value?

    /// Declares a setting with a custom parser; prefer the typed factories below.
    public init(
        _ name: String, environmentVariable: String? = nil, flag: String? = nil,
        default fallback: Value, defaultText: String?, valueName: String, help: String,
        required: Bool = false, secret: Bool = false, switch isSwitch: Bool = false, expectation: String,
        parse: @escaping @Sendable (String) -> Value?
    ) {
        self.spec = SettingSpec(
            name: name,
            environmentVariable: environmentVariable ?? Self.environmentVariable(for: name),
            flag: flag ?? "--" + name,
            defaultText: required ? nil : defaultText,
            valueName: valueName, help: help, isRequired: required, isSecret: secret,
            expectation: expectation)
        self.isSwitch = isSwitch
        self.fallback = fallback
        self.parse = parse
    }

    public func parsedValue(_ text: String) -> (any Sendable)? {
        parse(text)
    }

    /// `LOOP_` and the name upper-cased with `-` as `_`.
    static func environmentVariable(for name: String) -> String {
        "LOOP_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
    }
}

// MARK: - Typed factories

extension Setting where Value == String {
    /// A text setting with a default.
    public static func string(
        _ name: String, environmentVariable: String? = nil, flag: String? = nil, default value: String,
        valueName: String = "<text>", help: String, secret: Bool = false
    ) -> Setting {
        Setting(name, environmentVariable: environmentVariable, flag: flag, default: value,
                defaultText: value, valueName: valueName, help: help, secret: secret,
                expectation: "non-empty text") { $0 }
    }

    /// A text setting the service refuses to start without.
    public static func requiredString(
        _ name: String, environmentVariable: String? = nil, flag: String? = nil,
        valueName: String = "<text>", help: String, secret: Bool = false
    ) -> Setting {
        Setting(name, environmentVariable: environmentVariable, flag: flag, default: "",
                defaultText: nil, valueName: valueName, help: help, required: true, secret: secret,
                expectation: "non-empty text") { $0 }
    }
}

extension Setting where Value == String? {
    /// An optional text setting with no default.
    public static func optionalString(
        _ name: String, environmentVariable: String? = nil, flag: String? = nil,
        valueName: String = "<text>", help: String, secret: Bool = false
    ) -> Setting {
        Setting(name, environmentVariable: environmentVariable, flag: flag, default: nil,
                defaultText: nil, valueName: valueName, help: help, secret: secret,
                expectation: "non-empty text") { $0 }
    }

    /// An optional setting whose value must be one of `choices` (compared case-insensitively,
    /// stored lower-cased).
    public static func optionalChoice(
        _ name: String, environmentVariable: String? = nil, flag: String? = nil,
        choices: [String], help: String
    ) -> Setting {
        let lowered = choices.map { $0.lowercased() }
        return Setting(name, environmentVariable: environmentVariable, flag: flag, default: nil,
                       defaultText: nil, valueName: "<" + choices.joined(separator: "|") + ">", help: help,
                       expectation: "one of " + choices.joined(separator: ", ")) { text in
            lowered.contains(text.lowercased()) ? text.lowercased() : nil
        }
    }
}

extension Setting where Value == Int {
    /// An integer setting within `range`.
    public static func integer(
        _ name: String, environmentVariable: String? = nil, flag: String? = nil, default value: Int,
        range: ClosedRange<Int>, valueName: String = "<n>", help: String
    ) -> Setting {
        Setting(name, environmentVariable: environmentVariable, flag: flag, default: value,
                defaultText: String(value), valueName: valueName, help: help,
                expectation: "an integer from \(range.lowerBound) to \(range.upperBound)") { text in
            Int(text).flatMap { range.contains($0) ? $0 : nil }
        }
    }

    /// A TCP port; 0 lets the system pick a free one.
    public static func port(
        _ name: String, environmentVariable: String? = nil, flag: String? = nil, default value: Int, help: String
    ) -> Setting {
        integer(name, environmentVariable: environmentVariable, flag: flag, default: value, range: 0...65_535,
                valueName: "<port>", help: help)
    }
}

extension Setting where Value == Double {
    /// A number within `range`.
    public static func number(
        _ name: String, environmentVariable: String? = nil, flag: String? = nil, default value: Double,
        range: ClosedRange<Double>, valueName: String = "<x>", help: String
    ) -> Setting {
        Setting(name, environmentVariable: environmentVariable, flag: flag, default: value,
                defaultText: String(value), valueName: valueName, help: help,
                expectation: "a number from \(range.lowerBound) to \(range.upperBound)") { text in
            Double(text).flatMap { range.contains($0) ? $0 : nil }
        }
    }
}

extension Setting where Value == Bool {
    /// An on/off setting: the bare flag means `true`; values are `true|false|1|0|yes|no`.
    public static func toggle(
        _ name: String, environmentVariable: String? = nil, flag: String? = nil, default value: Bool = false,
        help: String
    ) -> Setting {
        Setting(name, environmentVariable: environmentVariable, flag: flag, default: value,
                defaultText: String(value), valueName: "", help: help, switch: true,
                expectation: "true or false") { text in
            switch text.lowercased() {
            case "true", "1", "yes", "on": true
            case "false", "0", "no", "off": false
            default: nil
            }
        }
    }
}

extension Setting where Value: RawRepresentable & CaseIterable, Value.RawValue == String {
    /// A setting whose value is one case of an enum, written as its raw value.
    public static func choice(
        _ name: String, environmentVariable: String? = nil, flag: String? = nil, default value: Value, help: String
    ) -> Setting {
        let names = Value.allCases.map(\.rawValue)
        return Setting(name, environmentVariable: environmentVariable, flag: flag, default: value,
                       defaultText: value.rawValue, valueName: "<" + names.joined(separator: "|") + ">",
                       help: help, expectation: "one of " + names.joined(separator: ", ")) { text in
            Value(rawValue: text.lowercased()) ?? Value(rawValue: text)
        }
    }
}

extension Setting where Value == [String: String] {
    /// Pass-through options written as `key=value,key=value`.
    public static func keyValues(
        _ name: String, environmentVariable: String? = nil, flag: String? = nil, help: String, secret: Bool = false
    ) -> Setting {
        Setting(name, environmentVariable: environmentVariable, flag: flag, default: [:], defaultText: nil,
                valueName: "<key=value,...>", help: help, secret: secret,
                expectation: "comma-separated key=value pairs") { text in
            var pairs = [String: String]()
            for item in text.split(separator: ",", omittingEmptySubsequences: true) {
                guard let equals = item.firstIndex(of: "=") else { return nil }
                let key = item[..<equals].trimmingCharacters(in: .whitespaces)
                guard !key.isEmpty else { return nil }
                pairs[key] = item[item.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            }
            return pairs
        }
    }
}
