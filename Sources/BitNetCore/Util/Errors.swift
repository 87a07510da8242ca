import Foundation
import BitNetKernels

/// Every error the library reports to a user: each names the thing and the problem.
public enum BitNetError: Error, CustomStringConvertible, Equatable {
    case fileNotFound(String)
    case unreadable(String, String)
    case unwritable(String, String)
    case invalidFormat(file: String, field: String, problem: String)
    case invalidArgument(String)
    case emptyCorpus(String)
    case shapeMismatch(String)
    case unsupported(String)

    public var description: String {
        switch self {
        case .fileNotFound(let p): return "file not found: \(p)"
        case .unreadable(let p, let why): return "cannot read \(p): \(why)"
        case .unwritable(let p, let why): return "cannot write \(p): \(why)"
        case .invalidFormat(let f, let field, let problem): return "\(f): invalid \(field): \(problem)"
        case .invalidArgument(let s): return "invalid argument: \(s)"
        case .emptyCorpus(let s): return "empty corpus: \(s)"
        case .shapeMismatch(let s): return "shape mismatch: \(s)"
        case .unsupported(let s): return "unsupported: \(s)"
        }
    }
}
