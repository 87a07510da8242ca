import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference

/// An error answered to the client with an OpenAI-shaped body `{"error":{"message","type","param","code"}}`.
package struct APIError: Error, Sendable, Equatable {
    package let status: Int
    package let message: String
    package let type: String
    package let param: String?
    package let code: String?

    package init(status: Int, message: String, type: String = "invalid_request_error", param: String? = nil, code: String? = nil) {
        self.status = status; self.message = message; self.type = type; self.param = param; self.code = code
    }

    /// 400 for a field the client got wrong.
    static func invalid(_ message: String, param: String?, code: String? = "invalid_value") -> APIError {
        APIError(status: 400, message: message, param: param, code: code)
    }

    /// The JSON body.
    package var body: Data {
        let err: [String: Any] = ["message": message, "type": type, "param": param ?? NSNull(), "code": code ?? NSNull()]
        return (try? JSONSerialization.data(withJSONObject: ["error": err], options: [.sortedKeys])) ?? Data()
    }
}

/// A parsed JSON value that keeps booleans, numbers and strings apart (so a wrong type is reported, not coerced).
enum JSONValue: Decodable, Equatable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    /// Name of the JSON type, for error messages.
    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

/// Which endpoint a request came to.
package enum CompletionKind: String, Sendable {
    case chat, text
}

/// A validated `POST /v1/completions` or `/v1/chat/completions` body.
package struct CompletionRequest: Sendable {
    package var kind: CompletionKind
    /// The text the model continues (chat messages rendered by `ChatTemplate`).
    package var prompt: String
    package var options: GenerationOptions
    package var stop: [String]
    package var stream: Bool
    package var includeUsage: Bool

    /// Fields OpenAI accepts that this server reads or safely ignores; any other field is refused as OpenAI does.
    static let knownFields: [CompletionKind: Set<String>] = [
        .text: ["model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "n", "stream",
                "stream_options", "user", "logprobs", "echo", "presence_penalty", "frequency_penalty", "best_of", "suffix"],
        .chat: ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop", "n",
                "stream", "stream_options", "user", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty"],
    ]

    /// Parses and checks a request body; `maxTokensLimit` is the context length (no completion can be longer).
    package static func parse(_ body: Data, kind: CompletionKind, maxTokensLimit: Int) throws(APIError) -> CompletionRequest {
        let root: JSONValue
        do { root = try JSONDecoder().decode(JSONValue.self, from: body) }
        catch { throw APIError.invalid("We could not parse the JSON body of your request: the body must be a JSON object.", param: nil, code: nil) }
        guard case .object(let f) = root else {
            throw APIError.invalid("The request body must be a JSON object, got \(root.typeName).", param: nil, code: nil)
        }
        for key in f.keys.sorted() where !knownFields[kind]!.contains(key) {
            throw APIError.invalid("Unrecognized request argument supplied: \(key)", param: key, code: "unknown_parameter")
        }
        // Unset sampling fields take the tool's defaults (GenerationOptions: temperature 0.8, top-k 40, top-p 0.95), so a
        // bare request samples as `bitnet generate` and `chat` do.
        var o = GenerationOptions()
        o.maxTokens = 256
        if let m = f["model"], !m.isNull { _ = try string(m, "model") }
        if let v = f["max_completion_tokens"], !v.isNull { o.maxTokens = try int(v, "max_completion_tokens", 1...maxTokensLimit) }
        if let v = f["max_tokens"], !v.isNull { o.maxTokens = try int(v, "max_tokens", 1...maxTokensLimit) }
        if let v = f["temperature"], !v.isNull { o.temperature = Float(try number(v, "temperature", 0...2)) }
        if let v = f["top_p"], !v.isNull {
            let p = try number(v, "top_p", 0...1)
            // Sampling runs in f32: a positive value below its smallest normal would become 0 there.
            guard Float(p) >= Float.leastNormalMagnitude else {
                throw APIError.invalid("top_p must be greater than 0 (at least \(Float.leastNormalMagnitude)), got \(p).", param: "top_p")
            }
            o.topP = Float(p)
        }
        if let v = f["top_k"], !v.isNull { o.topK = try int(v, "top_k", 0...Int(Int32.max)) }
        if let v = f["seed"], !v.isNull { o.seed = UInt64(bitPattern: Int64(try int(v, "seed", Int(Int64.min)...Int(Int64.max)))) }
        if let v = f["n"], !v.isNull { _ = try int(v, "n", 1...1) }
        if let v = f["best_of"], !v.isNull { _ = try int(v, "best_of", 1...1) }
        for key in ["presence_penalty", "frequency_penalty"] {
            if let v = f[key], !v.isNull, try number(v, key, -2...2) != 0 {
                throw APIError.invalid("\(key) is not supported by this server; send 0 or leave it out.", param: key, code: "unsupported_value")
            }
        }
        for key in ["logprobs", "echo"] {
            if let v = f[key], !v.isNull, v != .bool(false) {
                throw APIError.invalid("\(key) is not supported by this server; send false or leave it out.", param: key, code: "unsupported_value")
            }
        }
        if let v = f["top_logprobs"], !v.isNull { _ = try int(v, "top_logprobs", 0...0) }
        if let v = f["user"], !v.isNull { _ = try string(v, "user") }
        if let v = f["suffix"], !v.isNull, try string(v, "suffix") != "" {
            throw APIError.invalid("suffix is not supported by this server.", param: "suffix", code: "unsupported_value")
        }
        var stream = false, includeUsage = false
        if let v = f["stream"], !v.isNull { stream = try bool(v, "stream") }
        if let v = f["stream_options"], !v.isNull {
            guard case .object(let so) = v else { throw typeError("stream_options", "an object", v) }
            for key in so.keys.sorted() where key != "include_usage" {
                throw APIError.invalid("Unrecognized stream_options field: \(key)", param: "stream_options.\(key)", code: "unknown_parameter")
            }
            if let u = so["include_usage"], !u.isNull { includeUsage = try bool(u, "stream_options.include_usage") }
        }
        var stop: [String] = []
        if let v = f["stop"], !v.isNull {
            switch v {
            case .string(let s): stop = [s]
            case .array(let a):
                guard a.count <= 4 else { throw APIError.invalid("stop takes at most 4 sequences, got \(a.count).", param: "stop") }
                for item in a { stop.append(try string(item, "stop")) }
            default: throw typeError("stop", "a string or an array of strings", v)
            }
            guard !stop.contains("") else { throw APIError.invalid("stop sequences must not be empty.", param: "stop") }
        }
        let prompt: String
        switch kind {
        case .text:
            guard let p = f["prompt"] else { throw APIError.invalid("Missing required parameter: 'prompt'.", param: "prompt", code: "missing_required_parameter") }
            switch p {
            case .string(let s): prompt = s
            case .array(let a) where a.count == 1: prompt = try string(a[0], "prompt")
            case .array: throw APIError.invalid("prompt must be one string (batched prompts are not supported).", param: "prompt")
            default: throw typeError("prompt", "a string", p)
            }
        case .chat:
            guard let m = f["messages"] else { throw APIError.invalid("Missing required parameter: 'messages'.", param: "messages", code: "missing_required_parameter") }
            guard case .array(let list) = m else { throw typeError("messages", "an array", m) }
            guard !list.isEmpty else { throw APIError.invalid("messages must not be empty.", param: "messages") }
            var messages: [ChatTemplate.Message] = []
            for (i, item) in list.enumerated() { messages.append(try message(item, index: i)) }
            prompt = ChatTemplate.render(messages)
        }
        return CompletionRequest(kind: kind, prompt: prompt, options: o, stop: stop, stream: stream, includeUsage: includeUsage)
    }

    /// One chat message: role and text content (a string or a list of text parts).
    static func message(_ v: JSONValue, index i: Int) throws(APIError) -> ChatTemplate.Message {
        let p = "messages[\(i)]"
        guard case .object(let m) = v else { throw typeError(p, "an object", v) }
        for key in m.keys.sorted() where !["role", "content", "name"].contains(key) {
            throw APIError.invalid("Unrecognized field in \(p): \(key)", param: "\(p).\(key)", code: "unknown_parameter")
        }
        guard let r = m["role"] else { throw APIError.invalid("Missing required parameter: '\(p).role'.", param: "\(p).role", code: "missing_required_parameter") }
        let role = try string(r, "\(p).role")
        guard ["system", "developer", "user", "assistant"].contains(role) else {
            throw APIError.invalid("Invalid value for '\(p).role': '\(role)'; use system, developer, user or assistant.", param: "\(p).role")
        }
        if let n = m["name"], !n.isNull { _ = try string(n, "\(p).name") }
        guard let c = m["content"] else { throw APIError.invalid("Missing required parameter: '\(p).content'.", param: "\(p).content", code: "missing_required_parameter") }
        switch c {
        case .string(let s): return .init(role: role, content: s)
        case .array(let parts):
            var text = ""
            for (j, part) in parts.enumerated() {
                let pp = "\(p).content[\(j)]"
                guard case .object(let o) = part, o["type"] == .string("text"), let t = o["text"] else {
                    throw APIError.invalid("\(pp) must be a {\"type\":\"text\",\"text\":...} part; only text is supported.", param: pp)
                }
                text += try string(t, "\(pp).text")
            }
            return .init(role: role, content: text)
        default: throw typeError("\(p).content", "a string or an array of text parts", c)
        }
    }

    static func typeError(_ param: String, _ expected: String, _ got: JSONValue) -> APIError {
        APIError.invalid("Invalid type for '\(param)': expected \(expected), but got \(got.typeName).", param: param, code: "invalid_type")
    }

    static func string(_ v: JSONValue, _ param: String) throws(APIError) -> String {
        guard case .string(let s) = v else { throw typeError(param, "a string", v) }
        return s
    }

    static func bool(_ v: JSONValue, _ param: String) throws(APIError) -> Bool {
        guard case .bool(let b) = v else { throw typeError(param, "a boolean", v) }
        return b
    }

    static func number(_ v: JSONValue, _ param: String, _ range: ClosedRange<Double>) throws(APIError) -> Double {
        guard case .number(let d) = v else { throw typeError(param, "a number", v) }
        guard range.contains(d) else {
            throw APIError.invalid("\(d) is out of range for '\(param)': expected a value in [\(range.lowerBound), \(range.upperBound)].", param: param)
        }
        return d
    }

    static func int(_ v: JSONValue, _ param: String, _ range: ClosedRange<Int>) throws(APIError) -> Int {
        guard case .number(let d) = v else { throw typeError(param, "an integer", v) }
        guard d == d.rounded(), abs(d) < 9.2e18 else { throw typeError(param, "an integer", v) }
        let i = Int(d)
        guard range.contains(i) else {
            throw APIError.invalid("\(i) is out of range for '\(param)': expected a value in [\(range.lowerBound), \(range.upperBound)].", param: param)
        }
        return i
    }
}

extension JSONValue {
    var isNull: Bool { self == .null }
}

/// How chat messages become one prompt for a base model: one "Role: content" line each, then "Assistant:".
package enum ChatTemplate {
    package struct Message: Sendable, Equatable {
        package var role: String, content: String
        package init(role: String, content: String) { self.role = role; self.content = content }
    }

    /// The prompt text the model continues, e.g. "User: Hi\nAssistant:": `bitnet chat`'s plain template, with OpenAI's
    /// "developer" role as the system (the parser admits only system, developer, user and assistant).
    package static func render(_ messages: [Message]) -> String {
        BitNetInference.ChatTemplate.plain.render(messages.map { m in
            ChatMessage(m.role == "developer" ? .system : ChatMessage.Role(rawValue: m.role) ?? .user, m.content)
        })
    }
}
