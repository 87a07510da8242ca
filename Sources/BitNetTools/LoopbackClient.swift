import Foundation
#if canImport(Glibc)
import Glibc
private let systemClose = Glibc.close
private let systemSend = Glibc.send
#elseif canImport(Darwin)
import Darwin
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetEvaluation
import BitNetServer
import BitNetKernels
private let systemClose = Darwin.close
private let systemSend = Darwin.send
#endif

/// A minimal blocking HTTP/1.1 client over a TCP socket, used by `bitnet bench serve` and the server tests to drive
/// the server as a real client would (including badly: raw bytes, hanging up mid-stream, reading slowly).
package final class LoopbackConnection: @unchecked Sendable {   // one user at a time; tests hand it between threads
    let fd: Int32

    /// An HTTP response: status, headers (lower-cased names) and the de-chunked body.
    package struct Reply: Sendable {
        package var status: Int
        package var headers: [String: String]
        package var body: [UInt8]
        package var text: String { String(decoding: body, as: UTF8.self) }
        /// The `data:` payloads of a server-sent-events body, in order.
        package var events: [String] { LoopbackConnection.sseData(text) }
    }

    /// Connects to 127.0.0.1:`port`; reads give up after `timeout` seconds.
    package init(port: Int, timeout: Double = 60) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Self.error("socket") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: .init((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard r == 0 else { let e = Self.error("connect"); _ = systemClose(fd); throw e }
    }

    deinit { _ = systemClose(fd) }

    static func error(_ what: String) -> NSError {
        NSError(domain: "LoopbackConnection", code: Int(errno), userInfo: [NSLocalizedDescriptionKey: "\(what): \(String(cString: strerror(errno)))"])
    }

    /// Hangs up now (the server sees the connection close).
    package func close() { shutdown(fd, Int32(SHUT_RDWR)) }

    /// Sends raw bytes.
    package func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { systemSend(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Self.error("send") }
            off += n
        }
    }

    /// Sends one request (Content-Length set from the body).
    package func sendRequest(method: String, path: String, headers: [String: String] = [:], body: [UInt8] = []) throws {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (k, v) in headers.sorted(by: { $0.key < $1.key }) { head += "\(k): \(v)\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        try send(Array((head + "\r\n").utf8) + body)
    }

    private var buffer: [UInt8] = []
    /// Bytes per `recv`; small values with `pause` make a slow reader.
    package var readSize = 65536
    package var pause: Double = 0

    private func fill() throws -> Bool {
        if pause > 0 { usleep(UInt32(pause * 1e6)) }
        var chunk = [UInt8](repeating: 0, count: readSize)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 { throw Self.error("recv") }
        if n == 0 { return false }
        buffer += chunk[0..<n]
        return true
    }

    private func readLine() throws -> String {
        while true {
            if let i = buffer.firstIndex(of: 10) {
                let line = buffer[0..<i]
                buffer.removeFirst(i + 1)
                return String(decoding: line.last == 13 ? line.dropLast() : line, as: UTF8.self)
            }
            guard try fill() else { throw NSError(domain: "LoopbackConnection", code: 0, userInfo: [NSLocalizedDescriptionKey: "connection closed mid-response"]) }
        }
    }

    private func readExactly(_ n: Int) throws -> [UInt8] {
        while buffer.count < n {
            guard try fill() else { throw NSError(domain: "LoopbackConnection", code: 0, userInfo: [NSLocalizedDescriptionKey: "connection closed mid-body"]) }
        }
        let out = Array(buffer[0..<n])
        buffer.removeFirst(n)
        return out
    }

    /// Reads one response. `onBody` sees each body piece as it arrives; returning false stops reading (the caller then
    /// usually hangs up), and the reply holds what was read so far.
    package func readResponse(onBody: ([UInt8]) -> Bool = { _ in true }) throws -> Reply {
        let statusLine = try readLine()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw NSError(domain: "LoopbackConnection", code: 0, userInfo: [NSLocalizedDescriptionKey: "bad status line '\(statusLine)'"]) }
        var headers: [String: String] = [:]
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            if let c = line.firstIndex(of: ":") {
                headers[line[..<c].lowercased()] = line[line.index(after: c)...].trimmingCharacters(in: .whitespaces)
            }
        }
        var body: [UInt8] = []
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            while true {
                let size = Int(try readLine().split(separator: ";")[0], radix: 16) ?? 0
                if size == 0 { _ = try readLine(); break }
                let piece = try readExactly(size)
                _ = try readLine()
                body += piece
                if !onBody(piece) { break }
            }
        } else if let len = headers["content-length"].flatMap({ Int($0) }) {
            body = try readExactly(len)
            _ = onBody(body)
        }
        return Reply(status: status, headers: headers, body: body)
    }

    /// One request on a new connection.
    package static func request(port: Int, method: String = "POST", path: String, headers: [String: String] = [:], body: [UInt8] = [],
                               timeout: Double = 60) throws -> Reply {
        let c = try LoopbackConnection(port: port, timeout: timeout)
        try c.sendRequest(method: method, path: path, headers: headers, body: body)
        return try c.readResponse()
    }

    /// A JSON body.
    package static func json(_ object: Any) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
    }

    /// The `data:` payloads of an SSE text.
    package static func sseData(_ text: String) -> [String] {
        text.components(separatedBy: "\n\n").compactMap { event in
            let lines = event.split(separator: "\n").filter { $0.hasPrefix("data: ") }.map { $0.dropFirst(6) }
            return lines.isEmpty ? nil : lines.joined(separator: "\n")
        }
    }

    /// The text of a streamed completion: the concatenated `text` / `delta.content` of its chunks.
    package static func streamedText(_ events: [String]) -> String {
        var s = ""
        for e in events where e != "[DONE]" {
            guard let o = try? JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any],
                  let choices = o["choices"] as? [[String: Any]], let c = choices.first else { continue }
            if let t = c["text"] as? String { s += t }
            if let d = c["delta"] as? [String: Any], let t = d["content"] as? String { s += t }
        }
        return s
    }
}

/// Runs blocking work (socket reads) on its own thread, so it never ties up Swift's few cooperative threads, which the
/// server's handlers need.
package func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { cont in
        let t = Thread {
            do { cont.resume(returning: try body()) } catch { cont.resume(throwing: error) }
        }
        t.stackSize = 1 << 20
        t.start()
    }
}
