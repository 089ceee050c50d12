import Foundation

/// What an API key may do. A key holds one or more roles; roles do not imply each other.
public enum Role: String, Sendable, CaseIterable, Hashable {
    /// Sends events (`POST /v1/events`).
    case producer
    /// Gives human review verdicts.
    case reviewer
    /// Promotes, rolls back, replays and retrains.
    case `operator`
    /// Reads status, features and dashboards.
    case viewer
}

/// Who presented a valid API key: the key's name (for audit) and its roles.
public struct APIKeyIdentity: Sendable, Hashable {
    public var name: String
    public var roles: Set<Role>

    public init(name: String, roles: Set<Role>) {
        self.name = name
        self.roles = roles
    }
}

/// A freshly generated API key: give ``key`` to the client once, store only ``hashLine``.
public struct GeneratedAPIKey: Sendable {
    /// The key itself, `loop_` and 64 hex digits (256 random bits).
    public var key: String
    /// The line for the keys file: `<name> <roles> sha256:<hex>`.
    public var hashLine: String
}

/// The API keys a service accepts, held only as SHA-256 hashes.
///
/// A keys file (and the `LOOP_API_KEYS` env var, entries separated by `;`) has one key per line:
/// ```
/// # name        roles              hash of the key
/// ingest-writer producer           sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
/// ops-alice     operator,viewer    sha256:…
/// ```
/// Blank lines and `#` comments are ignored. Keys are random tokens with 256 bits of entropy, so a
/// plain unsalted SHA-256 is enough: nobody can guess a key from its hash, and a leaked keys file
/// grants nothing. Generate keys with ``generate(name:roles:)``.
public struct APIKeys: Sendable {
    private var identities: [String: APIKeyIdentity] = [:]

    /// No keys: every request that needs a role is refused.
    public init() {}

    /// Parses hash lines from `text`; `origin` (a path or env var) names the source in errors.
    /// - Throws: ``ServiceError`` with code `bad_keys` naming the origin and line.
    public init(parsing text: String, origin: String) throws(ServiceError) {
        try add(parsing: text, origin: origin)
    }

    /// Reads the keys of the file at `path` (if any) and of the inline `;`-separated `lines` (if any).
    /// - Throws: ``ServiceError`` with code `bad_keys` when the file cannot be read or a line is malformed.
    public static func load(path: String?, inline lines: String?) throws(ServiceError) -> APIKeys {
        var keys = APIKeys()
        if let path {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ServiceError(.badKeys, "\(path): cannot read the API keys file (\(error.localizedDescription))")
            }
            try keys.add(parsing: text, origin: path)
        }
        if let lines {
            try keys.add(parsing: lines.replacingOccurrences(of: ";", with: "\n"), origin: "LOOP_API_KEYS")
        }
        return keys
    }

    /// The number of keys.
    public var count: Int { identities.count }

    /// Who holds `key`, or `nil` if it is not a known key.
    public func identity(forKey key: String) -> APIKeyIdentity? {
        identities[Digest.hex(Digest.sha256(key))]
    }

    /// A new random key for `name` with `roles`, and its hash line.
    public static func generate(name: String, roles: Set<Role>) -> GeneratedAPIKey {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let key = "loop_" + Digest.hex(bytes)
        let roleList = Role.allCases.filter(roles.contains).map(\.rawValue).joined(separator: ",")
        return GeneratedAPIKey(key: key, hashLine: "\(name) \(roleList) sha256:\(Digest.hex(Digest.sha256(key)))")
    }

    // MARK: - Parsing

    private mutating func add(parsing text: String, origin: String) throws(ServiceError) {
        for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard !fields.isEmpty else { continue }
            let place = "\(origin) line \(offset + 1)"
            guard fields.count == 3 else {
                throw ServiceError(.badKeys, "\(place): expected `<name> <role>[,<role>...] sha256:<hex>`")
            }
            var roles = Set<Role>()
            for name in fields[1].split(separator: ",") {
                guard let role = Role(rawValue: String(name)) else {
                    let known = Role.allCases.map(\.rawValue).joined(separator: ", ")
                    throw ServiceError(.badKeys, "\(place): unknown role '\(name)' (roles: \(known))")
                }
                roles.insert(role)
            }
            let hash = fields[2].lowercased()
            guard hash.hasPrefix("sha256:"), let bytes = Digest.bytes(fromHex: hash.dropFirst(7)),
                  bytes.count == Digest.sha256Length
            else {
                throw ServiceError(.badKeys, "\(place): the hash must be `sha256:` and 64 hex digits, never the key itself")
            }
            let hex = Digest.hex(bytes)
            guard identities[hex] == nil else {
                throw ServiceError(.badKeys, "\(place): the same key hash is listed twice")
            }
            identities[hex] = APIKeyIdentity(name: String(fields[0]), roles: roles)
        }
    }
}
