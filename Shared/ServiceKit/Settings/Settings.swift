import Foundation

/// The resolved values of a service's settings: each from its flag if given, else from its env var
/// if set (and non-empty), else its default.
public struct Settings: Sendable {
    /// Where a setting's value came from.
    public enum Source: String, Sendable {
        case `default`, environment, flag
    }

    /// Every setting the service declared, in declaration order.
    public let declared: [SettingSpec]
    private let values: [String: any Sendable]
    private let texts: [String: String]
    private let sources: [String: Source]

    /// The value of `setting`; its default when the setting was not declared to ``parse(_:arguments:environment:)``.
    public subscript<Value>(_ setting: Setting<Value>) -> Value {
        (values[setting.spec.name] as? Value) ?? setting.fallback
    }

    /// Where the value of the setting named `name` came from.
    public func source(of name: String) -> Source {
        sources[name] ?? .default
    }

    /// The resolved settings as text by name, secrets given as `<redacted>` and unset ones left out:
    /// safe to log.
    public var redactedValues: [(name: String, value: String, source: Source)] {
        declared.compactMap { spec in
            guard let text = texts[spec.name] else { return nil }
            return (spec.name, spec.isSecret ? "<redacted>" : text, source(of: spec.name))
        }
    }

    // MARK: - Parsing

    /// What the command line asks for.
    public enum Request: Sendable {
        /// `--help` or `-h`: print ``helpText(program:summary:declarations:)`` and exit.
        case help
        /// Run with these settings.
        case run(Settings)
    }

    /// Resolves `declarations` from command-line `arguments` (without the program name) and
    /// `environment`.
    ///
    /// Flags are written `--flag value` or `--flag=value`; a switch (``Setting/toggle(_:environmentVariable:flag:default:help:)``)
    /// may stand alone. An empty value counts as not given.
    /// - Throws: ``ServiceError`` with code `unknown_flag`, `bad_value` or `missing_setting`, naming
    ///   the flag or env var at fault.
    public static func parse(
        _ declarations: [any SettingDeclaration], arguments: [String], environment: [String: String]
    ) throws(ServiceError) -> Request {
        var byFlag = [String: any SettingDeclaration]()
        for declaration in declarations {
            guard byFlag.updateValue(declaration, forKey: declaration.spec.flag) == nil else {
                throw ServiceError(.internal, "the setting \(declaration.spec.name) is declared twice")
            }
        }

        // Flags, last one wins.
        var flagTexts = [String: String]()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument == "--help" || argument == "-h" { return .help }
            guard argument.hasPrefix("-") else {
                throw ServiceError(.unknownFlag, "unexpected argument '\(argument)' (see --help)")
            }
            var flag = argument
            var inlineValue: String?
            if let equals = argument.firstIndex(of: "=") {
                flag = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            guard let declaration = byFlag[flag] else {
                throw ServiceError(.unknownFlag, "unknown flag \(flag) (see --help)")
            }
            if let inlineValue {
                flagTexts[declaration.spec.name] = inlineValue
            } else if declaration.isSwitch {
                flagTexts[declaration.spec.name] = "true"
            } else if index < arguments.count {
                flagTexts[declaration.spec.name] = arguments[index]
                index += 1
            } else {
                throw ServiceError(.badValue, "\(flag) needs a value: \(declaration.spec.expectation)")
            }
        }

        var values = [String: any Sendable]()
        var texts = [String: String]()
        var sources = [String: Source]()
        for declaration in declarations {
            let spec = declaration.spec
            let given: (text: String, source: Source, origin: String)?
            if let text = flagTexts[spec.name], !text.isEmpty {
                given = (text, .flag, spec.flag)
            } else if let text = environment[spec.environmentVariable], !text.isEmpty {
                given = (text, .environment, spec.environmentVariable)
            } else {
                given = nil
            }
            guard let given else {
                if spec.isRequired {
                    throw ServiceError(
                        .missingSetting, "missing \(spec.name): pass \(spec.flag) or set \(spec.environmentVariable)")
                }
                if let defaultText = spec.defaultText { texts[spec.name] = defaultText }
                continue
            }
            guard let value = declaration.parsedValue(given.text) else {
                let shown = spec.isSecret ? "the value" : "'\(given.text)'"
                throw ServiceError(
                    .badValue, "\(given.origin): \(shown) is not \(spec.expectation)")
            }
            values[spec.name] = value
            texts[spec.name] = given.text
            sources[spec.name] = given.source
        }
        return .run(Settings(declared: declarations.map(\.spec), values: values, texts: texts, sources: sources))
    }

    // MARK: - Help

    /// The `--help` text: every setting with its flag, env var, default and help.
    public static func helpText(program: String, summary: String, declarations: [any SettingDeclaration]) -> String {
        var lines = [
            "\(program) — \(summary)",
            "",
            "Usage: \(program) [--flag value | --flag=value]...",
            "",
            "Every setting is a flag or an environment variable: a flag overrides its env var, an env var",
            "overrides the default. Empty values count as not given.",
            "",
            "Settings:",
        ]
        for declaration in declarations {
            let spec = declaration.spec
            lines.append("  " + spec.flag + (spec.valueName.isEmpty ? "" : " " + spec.valueName))
            for helpLine in spec.help.split(separator: "\n") {
                lines.append("      " + helpLine)
            }
            var facts = ["env " + spec.environmentVariable]
            if spec.isRequired {
                facts.append("required")
            } else if let defaultText = spec.defaultText, !defaultText.isEmpty {
                facts.append("default " + defaultText)
            } else {
                facts.append("no default")
            }
            if spec.isSecret { facts.append("secret: never logged") }
            lines.append("      (" + facts.joined(separator: ", ") + ")")
        }
        lines.append("  -h, --help")
        lines.append("      Print this help and exit.")
        return lines.joined(separator: "\n") + "\n"
    }
}
