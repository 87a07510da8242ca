import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetKernels

/// WikiText perplexity as lm-evaluation-harness reports it: the model reads the detokenized text, and the summed
/// negative log-likelihood is divided by the number of words of the original (tokenized) text.
package enum WikiText {
    /// Undoes WikiText's tokenization (" @-@ " → "-", " , " → ", ", spaces inside brackets, " 's" → "'s", ...),
    /// following the harness's wikitext detokenizer rule by rule, in its order.
    package static func detokenize(_ text: String) -> String {
        var s = text
        func rep(_ a: String, _ b: String) { s = s.replacingOccurrences(of: a, with: b) }
        func sub(_ pattern: String, _ template: String) {
            guard let re = try? NSRegularExpression(pattern: pattern) else { return }
            s = re.stringByReplacingMatches(in: s, range: NSRange(s.startIndex..., in: s), withTemplate: template)
        }
        // Contractions.
        rep("s '", "s'")
        sub("/' [0-9]/", "/'[0-9]/")
        // Number separators.
        rep(" @-@ ", "-"); rep(" @,@ ", ","); rep(" @.@ ", ".")
        // Punctuation.
        rep(" : ", ": "); rep(" ; ", "; "); rep(" . ", ". "); rep(" ! ", "! "); rep(" ? ", "? "); rep(" , ", ", ")
        // Brackets and quotes hug their contents.
        sub("\\(\\s*([^\\)]*?)\\s*\\)", "($1)")
        sub("\\[\\s*([^\\]]*?)\\s*\\]", "[$1]")
        sub("\\{\\s*([^\\}]*?)\\s*\\}", "{$1}")
        sub("\"\\s*([^\"]*?)\\s*\"", "\"$1\"")
        sub("'\\s*([^']*?)\\s*'", "'$1'")
        // Headings and the rest.
        rep("= = = =", "===="); rep("= = =", "==="); rep("= =", "==")
        rep(" \u{00B0} ", "\u{00B0}")
        rep(" \n", "\n"); rep("\n ", "\n")
        rep(" N ", " 1 ")
        rep(" 's", "'s")
        return s
    }

    /// Words as the harness counts them: len(re.split(r"\s+", text)) on the original text (so leading or trailing
    /// whitespace adds an empty "word", exactly as Python's split does).
    package static func wordCount(_ text: String) -> Int {
        var count = 1, inSpace = false
        for u in text.unicodeScalars {
            let ws = u == " " || u == "\n" || u == "\t" || u == "\r" || u == "\u{0B}" || u == "\u{0C}"
            if ws && !inSpace { count += 1 }
            inSpace = ws
        }
        return count
    }
}

/// Token-, word- and byte-level perplexity of one text (words and bytes of the original text, as the harness counts them).
package struct WordPerplexityResult: Codable, Sendable {
    /// Scored tokens (every token but the first).
    package var tokens: Int
    package var words: Int
    package var bytes: Int
    /// Σ −log p over the scored tokens (nats).
    package var totalNLL: Double
    package var tokenPerplexity: Double { exp(totalNLL / Double(max(tokens, 1))) }
    /// exp(Σ NLL / words): the number WikiText papers report.
    package var wordPerplexity: Double { exp(totalNLL / Double(max(words, 1))) }
    package var bitsPerByte: Double { totalNLL / log(2) / Double(max(bytes, 1)) }
}

/// Perplexity of a model on `text` with windows of `context` tokens sliding by `stride`. `wikitext` detokenizes the
/// text first and counts words on the original; otherwise words are counted on the text as given.
/// `activationBits` applies PTQ activation quantization to an fp model.
package func wordPerplexity(weights: ModelWeights, tokenizer: any Tokenizer, text: String, wikitext: Bool,
                           context: Int? = nil, stride: Int? = nil, activationBits: Int? = nil, batch: Int = 8,
                           maxTokens: Int? = nil, showProgress: Bool = false) throws -> WordPerplexityResult {
    let ctx = min(context ?? weights.config.maxSeqLen, weights.config.maxSeqLen)
    guard ctx >= 2 else { throw BitNetError.invalidArgument("context must be >= 2") }
    if let stride, stride < 1 || stride > ctx { throw BitNetError.invalidArgument("stride must be in 1...\(ctx)") }
    var original = text
    if let maxTokens {
        // Cut the original on a line boundary near the budget (≈ 4 bytes per token) so words and bytes stay consistent.
        let limit = maxTokens * 4
        if original.utf8.count > limit {
            let cut = original.utf8.index(original.utf8.startIndex, offsetBy: limit)
            let head = String(original[..<cut])
            original = head.lastIndex(of: "\n").map { String(head[..<$0]) + "\n" } ?? head
        }
    }
    let modelText = wikitext ? WikiText.detokenize(original) : original
    let tokens = tokenizer.encode(modelText).map { Int32($0) }
    guard tokens.count >= 2 else { throw BitNetError.emptyCorpus("the text has \(tokens.count) tokens; need at least 2") }
    let graph = TrainingGraph(weights: weights, batch: batch, seqLen: ctx, activationBits: activationBits)
    let r = evaluateLoss(graph: graph, tokens: tokens, stride: stride, showProgress: showProgress)
    return WordPerplexityResult(tokens: r.count, words: WikiText.wordCount(original), bytes: original.utf8.count,
                                totalNLL: r.loss * Double(r.count))
}
