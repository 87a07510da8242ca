import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

final class ScalingLawTests: XCTestCase {
    /// Synthetic points on L(N) = a·N^b + c give back a, b, c.
    func testFitRecoversKnownLaw() throws {
        for (a, b, c) in [(12.0, -0.25, 1.7), (400.0, -0.5, 2.9), (3.0, -0.1, 0.2)] {
            let pts = [1e4, 3e4, 1e5, 3e5, 1e6].map { (n: $0, loss: a * pow($0, b) + c) }
            let f = try ScalingFit.fit(pts)
            XCTAssertEqual(f.a, a, accuracy: a * 1e-3)
            XCTAssertEqual(f.b, b, accuracy: 1e-4)
            XCTAssertEqual(f.c, c, accuracy: 1e-3)
            XCTAssertLessThan(f.rmse, 1e-6)
            XCTAssertEqual(f.predict(1e8), a * pow(1e8, b) + c, accuracy: 1e-3)
        }
    }

    func testFitNeedsThreeValidPoints() {
        XCTAssertThrowsError(try ScalingFit.fit([(n: 1, loss: 2), (n: 2, loss: 1)]))
        XCTAssertThrowsError(try ScalingFit.fit([(n: 0, loss: 2), (n: 2, loss: 1), (n: 3, loss: 1)]))
    }
}

final class PostTrainingQuantizationTests: XCTestCase {
    func testWeightQuantizers() throws {
        let c = tinyConfig(.fp)
        let w = ModelWeights(config: c, seed: 5)
        let slot = w.layout.slot("layers.0.attention.wq.weight")!
        let orig = Array(UnsafeBufferPointer(start: w.ptr + slot.offset, count: slot.count))
        let gamma = orig.map(abs).max()!
        // 8 bits: error at most half a step γ/127 (plus ε); 4 bits: at most 15 levels.
        let q8 = try PTQMethod.absmaxW8A8.apply(to: w).tensor(slot.name)!
        XCTAssertLessThanOrEqual(maxAbsDiff(q8, orig), (gamma + Quantizer.epsilon) / 127 / 2 * 1.0001)
        let q4 = try PTQMethod.absmaxW4A4.apply(to: w).tensor(slot.name)!
        XCTAssertLessThanOrEqual(Set(q4).count, 15)
        // 1 bit: two values ±β with β = mean|W|.
        let q1 = try PTQMethod.absmaxW1A8.apply(to: w).tensor(slot.name)!
        let beta = orig.map { Double(abs($0)) }.reduce(0, +) / Double(orig.count)
        XCTAssertEqual(Set(q1.map { abs($0) }).count, 1)
        XCTAssertEqual(Double(abs(q1[0])), beta, accuracy: 1e-6)
        // Embedding and norms untouched.
        XCTAssertEqual(try PTQMethod.absmaxW1A8.apply(to: w).tensor("tok_embeddings.weight")!, w.tensor("tok_embeddings.weight")!)
        XCTAssertThrowsError(try PTQMethod.absmaxW8A8.apply(to: ModelWeights(config: tinyConfig(.b158), seed: 1)))
    }

    /// Ternarizing an fp model after training and quantizing its activations to 8 bits per token is exactly what a
    /// b1.58 network does with the same latent weights: the two forwards agree.
    func testTernaryPTQEqualsB158Forward() throws {
        var c = tinyConfig(.fp, vocab: 37, seq: 8)
        c.tieEmbeddings = true
        let w = ModelWeights(config: c, seed: 11)
        var cq = c; cq.arch = .b158
        let wq = ModelWeights(config: cq); wq.ptr.update(from: w.ptr, count: w.layout.totalCount)
        let inputs = (0..<16).map { ($0 * 7) % 37 }
        let ref = TrainingGraph(weights: wq, batch: 2, seqLen: 8)
        ref.forward(inputs: inputs, training: false)
        let ptq = TrainingGraph(weights: try PTQMethod.absmeanTernaryA8.apply(to: w), batch: 2, seqLen: 8, activationBits: 8)
        ptq.forward(inputs: inputs, training: false)
        let n = 16 * 37
        XCTAssertLessThan(maxAbsDiff(Array(UnsafeBufferPointer(start: ref.logits.ptr, count: n)),
                                     Array(UnsafeBufferPointer(start: ptq.logits.ptr, count: n))), 1e-4)
        // Without activation quantization the logits differ (the activations path is really quantized).
        let noAct = TrainingGraph(weights: try PTQMethod.absmeanTernaryA8.apply(to: w), batch: 2, seqLen: 8)
        noAct.forward(inputs: inputs, training: false)
        XCTAssertGreaterThan(maxAbsDiff(Array(UnsafeBufferPointer(start: ref.logits.ptr, count: n)),
                                        Array(UnsafeBufferPointer(start: noAct.logits.ptr, count: n))), 1e-5)
    }
}

final class WikiTextTests: XCTestCase {
    func testDetokenizerRules() {
        XCTAssertEqual(WikiText.detokenize("the 1 @,@ 000 @-@ year @.@ old"), "the 1,000-year.old")
        XCTAssertEqual(WikiText.detokenize("Hello , world . It 's a ( big ) test ; yes : no ! ok ? "), "Hello, world. It's a (big) test; yes: no! ok? ")
        XCTAssertEqual(WikiText.detokenize(" = = Heading = = \n"), " == Heading ==\n")
        XCTAssertEqual(WikiText.detokenize("he said \" hi there \" ."), "he said \"hi there\" .")
        XCTAssertEqual(WikiText.detokenize("the players ' union"), "the players' union")
    }

    func testWordCountLikePythonSplit() {
        XCTAssertEqual(WikiText.wordCount("a b  c"), 3)
        XCTAssertEqual(WikiText.wordCount(" a b\n"), 4)   // re.split gives ['', 'a', 'b', '']
        XCTAssertEqual(WikiText.wordCount(""), 1)
    }

    /// A uniform model: total NLL = scored tokens · ln V, word perplexity = exp(that / words of the original).
    func testUniformModelWordPerplexity() throws {
        let raw = " = Title = \n The 1 @,@ 000 men , who came . \n It 's over . \n"
        let tok = ByteTokenizer()
        let w = ModelWeights(config: tinyConfig(.fp, vocab: 256, seq: 16))
        for stride in [16, 8, 3] {
            let r = try wordPerplexity(weights: w, tokenizer: tok, text: raw, wikitext: true, context: 16, stride: stride)
            let detok = WikiText.detokenize(raw)
            XCTAssertEqual(r.tokens, detok.utf8.count - 1)
            XCTAssertEqual(r.words, WikiText.wordCount(raw))
            XCTAssertEqual(r.wordPerplexity, exp(Double(detok.utf8.count - 1) * log(256) / Double(r.words)), accuracy: 1e-3 * r.wordPerplexity)
            XCTAssertEqual(r.tokenPerplexity, 256, accuracy: 1e-2)
        }
    }

    func testSharedWikiTextLoads() throws {
        let full = try FileIO.readText(try TestPaths.sharedFile("wikitext-2/valid.txt"))
        XCTAssertGreaterThan(WikiText.wordCount(full), 200_000)
        let text = String(full.prefix(20_000))
        XCTAssertTrue(WikiText.detokenize(text).count < text.count)
    }
}
